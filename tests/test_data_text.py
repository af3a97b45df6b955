"""Reading parallel text (qkv.data.text) and the Multi30k layout (qkv.data.multi30k)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from qkv.data import DataError, ParallelText, find_splits, read_lines, read_parallel, read_splits


def write(path: Path, data: str | bytes) -> Path:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)
    return path


# -- read_lines -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.txt", "a.txt.gz"])
def test_read_lines_plain_and_gzip_strip_whitespace(tmp_path, name):
    path = write(tmp_path / name, "\ufeff  Ein Hund. \r\nZwei Katzen\n\n\tÜber  alles\t\n")
    assert read_lines(path) == ["Ein Hund.", "Zwei Katzen", "", "Über  alles"]


def test_read_lines_does_not_split_on_unicode_line_separators(tmp_path):
    path = write(tmp_path / "a.txt", "eins\u2028zwei\x85drei\nvier\n")
    assert read_lines(path) == ["eins\u2028zwei\x85drei", "vier"]


def test_read_lines_bad_utf8_names_file_and_line(tmp_path):
    path = write(tmp_path / "train.de.gz", b"gut\nauch gut\nschlecht \xff hier\n")
    with pytest.raises(DataError, match=r"train\.de\.gz:3: not valid UTF-8 \(byte 0xff"):
        read_lines(path)


def test_read_lines_missing_and_corrupt_gzip(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        read_lines(tmp_path / "nope.txt")
    bad = tmp_path / "bad.en.gz"
    bad.write_bytes(b"this is not gzip data at all\n")
    with pytest.raises(DataError, match=r"bad\.en\.gz: cannot read compressed file"):
        read_lines(bad)
    truncated = tmp_path / "cut.en.gz"
    truncated.write_bytes(gzip.compress(("a sentence\n" * 1000).encode())[:60])
    with pytest.raises(DataError, match=r"cut\.en\.gz"):
        read_lines(truncated)


# -- read_parallel ----------------------------------------------------------------------------------------


def pair(tmp_path: Path, src: str | bytes, tgt: str | bytes, suffix: str = "") -> tuple[Path, Path]:
    return write(tmp_path / f"train.de{suffix}", src), write(tmp_path / f"train.en{suffix}", tgt)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_parallel_reads_aligned_pairs(tmp_path, suffix):
    src, tgt = pair(tmp_path, " Ein Hund.\nZwei Katzen.\n", "A dog. \nTwo cats.", suffix)
    data = read_parallel(src, tgt)
    assert isinstance(data, ParallelText)
    assert data.src == ["Ein Hund.", "Zwei Katzen."]
    assert data.tgt == ["A dog.", "Two cats."]
    assert list(data) == [("Ein Hund.", "A dog."), ("Zwei Katzen.", "Two cats.")]
    assert len(data) == 2 and data.n_dropped == 0 and data.dropped == {}


@pytest.mark.parametrize(
    ("src", "tgt", "where", "problem"),
    [
        ("a\n\nc\n", "x\ny\nz\n", "train.de:2", "empty line"),
        ("a\nb\nc\n", "x\n   \nz\n", "train.en:2", "empty line"),
        (b"a\nb\nc \xc3\x28\n", b"x\ny\nz\n", "train.de:3", "not valid UTF-8"),
        ("a\nb\nc\n", "x\none two three four five\nz\n", "train.en:2", "5 words, more than max_words=4"),
    ],
)
def test_read_parallel_errors_name_file_and_line(tmp_path, src, tgt, where, problem):
    src_path, tgt_path = pair(tmp_path, src, tgt)
    with pytest.raises(DataError) as info:
        read_parallel(src_path, tgt_path, max_words=4)
    message = str(info.value)
    assert f"{where}: " in message and problem in message


@pytest.mark.parametrize(("src", "tgt", "longer", "line"), [("a\nb\nc\n", "x\ny\n", "de", 3),
                                                             ("a\n", "x\ny\nz\n", "en", 2)])
def test_read_parallel_line_count_mismatch_is_always_an_error(tmp_path, src, tgt, longer, line):
    src_path, tgt_path = pair(tmp_path, src, tgt, ".gz")
    for skip in (False, True):
        with pytest.raises(DataError, match=rf"train\.{longer}\.gz:{line}: line count mismatch"):
            read_parallel(src_path, tgt_path, skip_invalid=skip)


def test_read_parallel_skip_invalid_drops_and_counts(tmp_path):
    src = b"ok one\n\nok three\nbad \xff\nfine five\nway too many words here\nok seven\n"
    tgt = b"eins\nzwei\n\ndrei\nfuenf\nkurz\nsieben\n"
    src_path, tgt_path = pair(tmp_path, src, tgt)
    data = read_parallel(src_path, tgt_path, max_words=3, skip_invalid=True)
    assert data.src == ["ok one", "fine five", "ok seven"]
    assert data.tgt == ["eins", "fuenf", "sieben"]
    assert data.dropped == {"empty": 2, "not_utf8": 1, "too_long": 1}
    assert data.n_dropped == 4


def test_read_parallel_max_words_is_inclusive_and_validated(tmp_path):
    src_path, tgt_path = pair(tmp_path, "one two three\n", "eins zwei drei\n")
    assert len(read_parallel(src_path, tgt_path, max_words=3)) == 1
    with pytest.raises(ValueError, match="max_words"):
        read_parallel(src_path, tgt_path, max_words=0)


def test_parallel_text_refuses_unequal_sides():
    with pytest.raises(DataError, match="as many targets as sources"):
        ParallelText(["a", "b"], ["x"])


# -- find_splits ------------------------------------------------------------------------------------------


def make_layout(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        write(folder / name, "a line\n")
    return folder


def test_find_splits_multi30k_layout_prefers_flickr_test(tmp_path):
    names = [f"{s}.{lang}.gz" for s in ("train", "val", "test_2016_flickr") for lang in ("de", "en", "fr")]
    folder = make_layout(tmp_path / "m30k", [*names, "test.de", "test.en"])
    splits = find_splits(folder, "de", "en")
    assert list(splits) == ["train", "val", "test"]
    assert splits["train"] == (folder / "train.de.gz", folder / "train.en.gz")
    assert splits["test"] == (folder / "test_2016_flickr.de.gz", folder / "test_2016_flickr.en.gz")
    assert find_splits(folder, "fr", "de")["val"] == (folder / "val.fr.gz", folder / "val.de.gz")


def test_find_splits_plain_files_and_test_fallback(tmp_path):
    names = [f"{split}.{lang}" for split in ("train", "val", "test") for lang in ("words", "iso")]
    folder = make_layout(tmp_path, names)
    assert find_splits(folder, "words", "iso")["test"] == (folder / "test.words", folder / "test.iso")
    data = read_splits(folder, "words", "iso")
    assert {split: len(pairs) for split, pairs in data.items()} == {"train": 1, "val": 1, "test": 1}


def test_find_splits_missing_file_lists_wanted_and_present(tmp_path):
    folder = make_layout(tmp_path, ["train.de.gz", "train.en.gz", "val.de.gz", "val.en.gz", "test.de.gz"])
    with pytest.raises(FileNotFoundError) as info:
        find_splits(folder, "de", "en")
    message = str(info.value)
    assert "no test split for de->en" in message
    assert "test_2016_flickr.en[.gz]" in message and "test.en[.gz]" in message  # what was looked for
    assert "test.de.gz" in message and "val.en.gz" in message  # what exists
    with pytest.raises(FileNotFoundError, match="no such data folder"):
        find_splits(tmp_path / "absent", "de", "en")
    with pytest.raises(ValueError, match="both 'de'"):
        find_splits(folder, "de", "de")


# -- the real Multi30k ------------------------------------------------------------------------------------


@pytest.mark.data
def test_real_multi30k_sizes(shared_data):
    folder = shared_data / "multi30k"
    splits = find_splits(folder, "de", "en")
    assert splits["test"][0].name == "test_2016_flickr.de.gz"
    data = read_splits(folder, "de", "en")
    assert {split: len(pairs) for split, pairs in data.items()} == {"train": 29000, "val": 1014, "test": 1000}
    for pairs in data.values():
        assert pairs.n_dropped == 0
        assert all(s and t and s == s.strip() and t == t.strip() for s, t in pairs)
    assert data["train"].src[0].startswith("Zwei junge weiße Männer")
    # every language pair lines up
    assert len(read_parallel(*find_splits(folder, "fr", "cs")["test"])) == 1000


@pytest.mark.data
def test_real_multi30k_max_words_drops_only_long_sentences(shared_data):
    src, tgt = find_splits(shared_data / "multi30k", "de", "en")["val"]
    full = read_parallel(src, tgt)
    short = read_parallel(src, tgt, max_words=12, skip_invalid=True)
    expected = sum(max(len(s.split()), len(t.split())) > 12 for s, t in full)
    assert 0 < expected < len(full)
    assert short.dropped == {"too_long": expected}
    assert len(short) == len(full) - expected
    with pytest.raises(DataError, match=r"val\.(de|en)\.gz:\d+: \d+ words, more than max_words=12"):
        read_parallel(src, tgt, max_words=12)
