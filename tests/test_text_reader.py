"""The text reader and the sentence inputs of the commands: line ends (LF, CRLF, lone CR), NUL bytes,
bytes that are not UTF-8 (files, stdin, arguments), empty lines to translate, and sentences too long in
subwords named by file and line; then a fuzz test over arbitrary bytes."""

from __future__ import annotations

import io
import logging
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qkv.cli import main
from qkv.data.synthetic import write_demo_corpus
from qkv.data.text import DataError, check_text, iter_lines, read_lines, read_parallel, read_stream

TINY = ["--preset", "tiny", "--lr-schedule", "inverse_sqrt", "--lr", "2e-3", "--warmup", "10", "--no-progress",
        "--device", "cpu", "--tokenizer", "word", "--max-tokens", "512", "--no-bleu", "--no-test",
        "--average-last", "1"]


def test_cr_only_crlf_and_lf_line_ends_are_all_lines(tmp_path):
    for end in (b"\n", b"\r\n", b"\r"):
        path = tmp_path / "f.txt"
        path.write_bytes(end.join([b"ein Hund", b"", b"zwei Katzen"]) + end)
        assert read_lines(path) == ["ein Hund", "", "zwei Katzen"], end
    (tmp_path / "mixed.txt").write_bytes(b"a\r\nb\rc\nd")
    assert read_lines(tmp_path / "mixed.txt") == ["a", "b", "c", "d"]
    (tmp_path / "a.de").write_bytes(b"eins\rzwei\r")
    (tmp_path / "a.en").write_bytes(b"one\ntwo\n")
    assert list(read_parallel(tmp_path / "a.de", tmp_path / "a.en")) == [("eins", "one"), ("zwei", "two")]


def test_nul_bytes_are_refused_with_file_and_line_or_dropped_and_counted(tmp_path):
    (tmp_path / "a.de").write_bytes(b"eins\nzw\x00ei\ndrei\n")
    (tmp_path / "a.en").write_bytes(b"one\ntwo\nthree\n")
    with pytest.raises(DataError, match=r"a\.de:2: a NUL byte at byte 3"):
        read_parallel(tmp_path / "a.de", tmp_path / "a.en")
    with pytest.raises(DataError, match=r"a\.de:2: a NUL byte"):
        read_lines(tmp_path / "a.de")
    data = read_parallel(tmp_path / "a.de", tmp_path / "a.en", skip_invalid=True)
    assert data.src == ["eins", "drei"] and data.lines == [1, 3] and data.dropped == {"nul_byte": 1}


def test_stdin_and_arguments_that_are_not_utf8_are_one_line_errors():
    assert list(read_stream(io.BytesIO(b"a\n\nb"))) == ["a", "", "b"]
    with pytest.raises(DataError, match=r"<stdin>:2: not valid UTF-8 \(byte 0xff at byte 3\)"):
        list(read_stream(io.BytesIO(b"ok\nab\xffc\n")))
    bad = b"ab\xff".decode("utf-8", "surrogateescape")  # how Python hands such an argument over
    with pytest.raises(DataError, match=r"argument 2: not valid UTF-8"):
        check_text(bad, "argument 2")
    assert check_text("Über", "argument 1") == "Über"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("tr")
    data = write_demo_corpus(root / "data", n_train=200, n_val=20, n_test=20, seed=3)
    out = root / "run"
    assert main(["train", "--data", str(data), "--src", "words", "--tgt", "iso", "--out", str(out), *TINY,
                 "--max-steps", "2"]) == 0
    return out / "last"


def test_translate_empty_lines_give_empty_lines(model, tmp_path, capsys, monkeypatch):
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"may 4 , 1999\n\n  \nmay 5 , 2000\n")))
    assert main(["translate", "--model", str(model), "--beam", "1"]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert len(lines) == 5 and lines[1] == lines[2] == "" and lines[0] and lines[3] and lines[4] == ""
    assert main(["translate", "--model", str(model), "--beam", "2", ""]) == 0
    assert capsys.readouterr().out == "\n"


def test_translate_refuses_bad_bytes_in_one_line(model, tmp_path, capsys, monkeypatch):
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"may 4 , 1999\nmay \xff 5\n")))
    assert main(["translate", "--model", str(model)]) == 2
    assert capsys.readouterr().err.strip() == "qkv translate: error: <stdin>:2: not valid UTF-8 (byte 0xff at byte 5)"
    assert main(["translate", "--model", str(model), b"may \xff".decode("utf-8", "surrogateescape")]) == 2
    assert "argument 1: not valid UTF-8" in capsys.readouterr().err
    (tmp_path / "in.txt").write_bytes(b"may 4 , 1999\rmay 5 , 2000\r\x00\r")
    assert main(["translate", "--model", str(model), "--file", str(tmp_path / "in.txt")]) == 2
    assert f"{tmp_path / 'in.txt'}:3: a NUL byte" in capsys.readouterr().err


def test_a_sentence_too_long_in_subwords_names_its_file_and_line(tmp_path, capsys, caplog):
    data = write_demo_corpus(tmp_path / "data", n_train=60, n_val=10, n_test=10, seed=3)
    for name, long in (("train.words", "may " * 20), ("train.iso", "x")):
        lines = (data / name).read_text().splitlines()
        lines[2], lines[6] = "", long.strip()  # an empty line before: the index after filtering is 5, not 7
        (data / name).write_text("\n".join(lines) + "\n")
    argv = ["train", "--data", str(data), "--src", "words", "--tgt", "iso", "--out", str(tmp_path / "run"), *TINY,
            "--max-steps", "1", "--set", "max_len=16", "--skip-invalid"]
    assert main(argv[:-1]) == 2  # without --skip-invalid: the empty line is an error first
    assert "train.words:3: empty line" in capsys.readouterr().err
    lines = (data / "train.words").read_text().splitlines()
    lines[2] = "may 4 , 1999"
    (data / "train.words").write_text("\n".join(lines) + "\n")
    (data / "train.iso").write_text((data / "train.iso").read_text().replace("\n\n", "\n1999-05-04\n", 1))
    assert main(argv[:-1]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{data / 'train.words'}:7: source has 20 subwords" in err and "max_len=16" in err, err
    with caplog.at_level(logging.INFO, logger="qkv.cli"):
        assert main(argv) == 0
    assert "dropped: {'train': {'too_long': 1}}" in caplog.text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=12), max_size=8), st.lists(st.sampled_from([b"\n", b"\r\n", b"\r"]), min_size=8,
                                                                 max_size=8), st.booleans())
def test_fuzz_the_reader_never_fails_but_with_data_error_and_keeps_the_line_count(tmp_path, pieces, ends, tail):
    """Arbitrary bytes with arbitrary line ends: every line comes back (as Python's universal newlines split
    them) as its stripped text or as a problem; files give a DataError naming file:line, nothing else."""
    blob = b"".join(p + e for p, e in zip(pieces, ends)) + (b"tail" if tail else b"")
    expected = io.StringIO(blob.decode("latin-1"), newline=None).readlines()  # bytes 1:1; the oracle's lines
    read = list(iter_lines(io.BytesIO(blob)))
    assert [n for n, *_ in read] == list(range(1, len(expected) + 1))
    for (number, text, problem, reason), line in zip(read, expected):
        raw = line.rstrip("\n").encode("latin-1")
        raw = raw[3:] if number == 1 and raw.startswith(b"\xef\xbb\xbf") else raw
        assert (text is None) == bool(problem) == bool(reason)
        if text is not None:
            assert text == raw.decode("utf-8").strip() and "\x00" not in text
        else:
            assert reason in ("not_utf8", "nul_byte")
    path = tmp_path / "fuzz.txt"
    path.write_bytes(blob)
    try:
        assert len(read_lines(path)) == len(expected)
    except DataError as err:
        assert str(err).startswith(f"{path}:") and len(str(err).splitlines()) == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.binary(max_size=10), st.sampled_from([b"\n", b"\r\n", b"\r"])), max_size=8),
       st.booleans())
def test_fuzz_parallel_files_keep_or_count_every_pair(tmp_path, lines, skip):
    """Two sides with the same lines (the target side plain ASCII): every pair is kept or counted as dropped
    with skip_invalid; without it, a DataError names file:line."""
    src = b"".join(b"s" + p.replace(b"\n", b"_").replace(b"\r", b"_") + e for p, e in lines)  # no "\r" "" "\n"
    tgt = b"".join(b"t" + e for _, e in lines)
    (tmp_path / "a.src").write_bytes(src)
    (tmp_path / "a.tgt").write_bytes(tgt)
    try:
        data = read_parallel(tmp_path / "a.src", tmp_path / "a.tgt", skip_invalid=skip, max_words=3)
    except DataError as err:
        assert not skip and str(err).startswith(f"{tmp_path / 'a.src'}:")
        return
    assert len(data) + data.n_dropped == len(lines) and data.lines == sorted(data.lines)
    assert all(data.src) and set(data.dropped) <= {"empty", "not_utf8", "nul_byte", "too_long"}
