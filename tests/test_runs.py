"""Runs are never lost or mixed: a run folder is refused unless --resume / --overwrite, one run holds it at a
time (a lock that a dead process leaves stale), --resume refuses what contradicts the saved run, and --seed
repeats a CPU run bit for bit. All through ``qkv.cli.main`` on a generated corpus with the tiny preset."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from qkv.cli import main
from qkv.data.synthetic import write_demo_corpus
from qkv.train.runlock import RunLock, RunLocked, lock_path

TINY = ["--preset", "tiny", "--lr-schedule", "inverse_sqrt", "--lr", "2e-3", "--warmup", "10", "--no-progress",
        "--device", "cpu", "--tokenizer", "word", "--max-tokens", "512", "--no-bleu", "--no-test",
        "--average-last", "1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_demo_corpus(tmp_path_factory.mktemp("data") / "demo", n_train=200, n_val=20, n_test=20, seed=3)


def train_argv(corpus, out, *extra) -> list[str]:
    return ["train", "--data", str(corpus), "--src", "words", "--tgt", "iso", "--out", str(out), *TINY, *extra]


@pytest.fixture(scope="module")
def saved_run(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(train_argv(corpus, out, "--max-steps", "2")) == 0
    return out


def copy_run(saved_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(saved_run, out)
    return out


def test_a_new_run_into_a_run_folder_is_refused_then_overwrite_starts_afresh(corpus, saved_run, tmp_path, capsys):
    out = copy_run(saved_run, tmp_path)
    (out / "notes.txt").write_text("mine")
    before = (out / "last" / "model.safetensors").read_bytes()
    assert main(train_argv(corpus, out, "--max-steps", "2")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (out / "last" / "model.safetensors").read_bytes() == before  # untouched
    assert main(train_argv(corpus, out, "--max-steps", "1", "--overwrite")) == 0
    assert not (out / "notes.txt").exists()  # cleared first
    assert json.loads((out / "last" / "config.json").read_text())["step"] == 1
    assert not lock_path(out).exists()  # released
    assert main(train_argv(corpus, out, "--max-steps", "2", "--resume", "--overwrite")) == 2
    assert "give one of them" in capsys.readouterr().err


def test_a_folder_with_other_files_is_refused_too(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "data.csv").write_text("x")
    assert main(train_argv(corpus, out, "--max-steps", "1")) == 2
    assert "is not empty (data.csv)" in capsys.readouterr().err


def test_averaging_more_checkpoints_than_are_kept_is_refused_before_training(corpus, tmp_path, capsys):
    """--average-last 8 with the default 5 kept checkpoints would average 5: one line, no run left behind."""
    out = tmp_path / "run"
    assert main(train_argv(corpus, out, "--max-steps", "1", "--average-last", "8")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--average-last 8" in err and "--keep-checkpoints 8" in err, err
    assert not (out / "options.json").exists() and not (out / "last").exists()


def test_a_second_run_on_the_same_folder_stops_at_once_naming_the_first(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    with RunLock(out):
        assert main(train_argv(corpus, out, "--max-steps", "1")) == 2
    err = capsys.readouterr().err
    assert f"process {os.getpid()}" in err and "in use by another run" in err
    assert not out.exists()  # nothing was written


def test_a_stale_lock_of_a_dead_process_is_taken_over(corpus, tmp_path, caplog):
    out = tmp_path / "run"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(out).write_text(f"pid={dead.pid}\nhost=elsewhere\n")
    with caplog.at_level(logging.INFO, logger="qkv.cli"):
        assert main(train_argv(corpus, out, "--max-steps", "1")) == 0
    assert f"took over the stale lock of process {dead.pid}" in caplog.text
    assert not lock_path(out).exists()


def test_sigterm_releases_the_lock(tmp_path):
    out = tmp_path / "run"
    code = ("import sys, time; from qkv.train.runlock import RunLock\n"
            f"with RunLock({str(out)!r}):\n    print('locked', flush=True)\n    time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked, match=f"process {child.pid}"):
            RunLock(out).acquire()
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)
    finally:
        child.kill()
    assert not lock_path(out).exists()  # the finally blocks ran
    with RunLock(out) as lock:
        assert lock.took_over is None


def _rank(rank: int, port: int, argv: list[str], out: str) -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    code = main(argv)
    Path(out, f"rank{rank}.code").write_text(str(code))


def test_under_torchrun_only_rank_0_locks_and_checks(corpus, tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    mp.spawn(_rank, args=(port, train_argv(corpus, out, "--max-steps", "2"), str(tmp_path)), nprocs=2, join=True)
    assert [(tmp_path / f"rank{r}.code").read_text() for r in range(2)] == ["0", "0"]  # rank 1 did not refuse
    assert json.loads((out / "last" / "config.json").read_text())["step"] == 2 and not lock_path(out).exists()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--preset", "small"], "d_model 64 -> 256"),
        (["--set", "dropout=0.3"], "dropout 0.0 -> 0.3"),
        (["--arch", "rnn"], "arch 'transformer' -> 'rnn'"),
        (["--vocab-size", "100"], "vocab_size 8000 -> 100"),
        (["--tokenizer", "bpe"], "tokenizer 'word' -> 'bpe'"),
        (["--seed", "9"], "seed 1 -> 9"),
        (["--max-tokens", "1024"], "max_tokens 512 -> 1024"),
        (["--tgt", "words", "--src", "iso"], "src 'words' -> 'iso'"),
    ],
)
def test_resume_refuses_options_that_contradict_the_saved_run(corpus, saved_run, tmp_path, capsys, extra, named):
    out = copy_run(saved_run, tmp_path)
    assert main(train_argv(corpus, out, "--max-steps", "3", "--resume", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "contradict the saved run" in err and named in err, err


def test_resume_applies_and_says_the_options_it_can_take(corpus, saved_run, tmp_path, caplog):
    out = copy_run(saved_run, tmp_path)
    argv = ["train", "--data", str(corpus), "--src", "words", "--tgt", "iso", "--out", str(out), "--resume",
            "--max-steps", "3", "--lr", "1e-3", "--no-progress", "--no-test", "--no-bleu", "--average-last", "1"]
    with caplog.at_level(logging.INFO, logger="qkv.cli"):
        assert main(argv) == 0  # the rest (preset tiny, word tokenizer, inverse_sqrt, max-tokens) from the run
    assert "resume: applying max_steps 2 -> 3; lr 0.002 -> 0.001" in caplog.text
    train = json.loads((out / "last" / "config.json").read_text())["train"]
    assert (train["max_steps"], train["lr"], train["lr_schedule"], train["max_tokens"]) == (3, 1e-3, "inverse_sqrt",
                                                                                              512)


def test_every_training_option_has_a_resume_rule():
    """A new TrainConfig field needs its --resume rule in qkv.cli._resume (else a resumed run would ignore it)."""
    from dataclasses import fields

    from qkv.cli._resume import NOT_OPTIONS, TRAIN_OPTIONS
    from qkv.train.config import TrainConfig

    assert {f.name for f in fields(TrainConfig)} == set(TRAIN_OPTIONS) | set(NOT_OPTIONS)


def weights(folder: Path) -> dict:
    return load_file(folder / "model.safetensors")


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].equal(b[name]), name


def test_seed_repeats_a_cpu_translation_run_bit_for_bit(corpus, tmp_path):
    runs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        assert main(train_argv(corpus, tmp_path / name, "--max-steps", "2", "--seed", str(seed))) == 0
        runs.append(weights(tmp_path / name / "last"))
    assert_same(runs[0], runs[1])
    assert any(not runs[0][k].equal(runs[2][k]) for k in runs[0])  # the seed matters


def test_seed_repeats_classify_train_bit_for_bit(tmp_path):
    rows = ["label\tsentence"] + [f"{i % 2}\t{'a fine film' if i % 2 else 'a dull mess'} {i}" for i in range(40)]
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "dev.tsv").write_text("label\tsentence\n1\tfine film\n0\tdull mess\n")
    for name in ("a", "b"):
        assert main(["classify", "train", "--data", str(tmp_path), "--out", str(tmp_path / name), "--preset", "tiny",
                     "--epochs", "1", "--batch-size", "8", "--vocab-size", "60", "--seed", "7"]) == 0
    assert_same(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert main(["classify", "train", "--data", str(tmp_path), "--out", str(tmp_path / "a"), "--preset", "tiny"]) == 2


def test_seed_repeats_vit_train_bit_for_bit(tmp_path, capsys):
    pytest.importorskip("sklearn")
    for name in ("a", "b"):
        assert main(["vit", "train", "--out", str(tmp_path / name), "--epochs", "1", "--preset", "digits",
                     "--seed", "7"]) == 0
    assert_same(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert main(["vit", "train", "--out", str(tmp_path / "a"), "--epochs", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
