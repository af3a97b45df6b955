"""``bench/gpu.sh`` (issue 17, item 6): the one GPU script, run end to end in its tiny CPU mode.

``QKV_GPU_TINY=1`` runs every step with tiny sizes on the CPU (compilation off): the options the script passes
must be accepted by every bench script, every section must reach the report, and no step may fail. Two quick
tests check the guards with a stand-in interpreter: a failing step is recorded with its error tail and the
script goes on; a slow step is cut by its timeout and the spent budget skips the rest.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu.sh"
STEPS = ("1a", "1b", "1c", "1d", "2", "3", "4", "5")

pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and coreutils' timeout"
)


def tiny_corpus(folder: Path, n_train: int = 400, n_test: int = 16, seed: int = 0) -> Path:
    """A Multi30k-shaped folder (plain text) of a word-for-word 'German' -> 'English' toy language."""
    words = {"der": "the", "hund": "dog", "mann": "man", "frau": "woman", "sieht": "sees", "ein": "a",
             "kind": "child", "läuft": "runs", "rot": "red", "ball": "ball", "auf": "on", "gras": "grass"}
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("val", n_test), ("test_2016_flickr", n_test)):
        pairs = [rng.choices(list(words), k=rng.randint(3, 8)) for _ in range(n)]
        (folder / f"{split}.de").write_text("".join(" ".join(p) + "\n" for p in pairs), encoding="utf-8")
        (folder / f"{split}.en").write_text("".join(" ".join(words[w] for w in p) + "\n" for p in pairs),
                                            encoding="utf-8")
    return folder


def run_script(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, str]:
    report = tmp_path / "report.md"
    environ = {**os.environ, "QKV_GPU_TINY": "1", "QKV_GPU_WORK": str(tmp_path / "work"),
               "QKV_PYTHON": sys.executable, **env}
    environ.pop("OUT", None)
    done = subprocess.run(["bash", str(SCRIPT), str(report)], env=environ, capture_output=True, text=True,
                          timeout=600, check=False)
    assert report.is_file(), done.stderr
    return done, report.read_text(encoding="utf-8")


def step_rows(report: str) -> dict[str, str]:
    """The step table: step id -> its status cell."""
    rows = re.findall(r"^\| (\w+) \| [^|]+ \| ([^|]+) \| [\d.]+ \| \d+ \|$", report, flags=re.MULTILINE)
    return dict(rows)


def fake_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for the interpreter: ``bench/gpu_report.py`` prints a line, the steps run
    ``body``."""
    path = tmp_path / "fake-python"
    path.write_text(f'#!/usr/bin/env bash\ncase "$*" in *gpu_report.py*) echo "- fake"; exit 0;; esac\n{body}\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.slow  # every bench script in its own process (torch and transformers imports): ~50 s on 2 cores
def test_tiny_mode_runs_every_step_and_reports_it(tmp_path):
    data = tiny_corpus(tmp_path / "data" / "multi30k")
    done, report = run_script(tmp_path, QKV_DATA=str(data.parent))
    assert done.returncode == 0, done.stderr[-2000:]
    rows = step_rows(report)
    assert list(rows) == list(STEPS)
    for step in ("1a", "2", "3", "4", "5"):
        assert rows[step] == "ok", (step, rows[step])
    for step in ("1b", "1c", "1d"):  # compilation is off in tiny mode
        assert rows[step] == "skipped: QKV_GPU_COMPILE=0"
    assert "FAILED" not in report and "TIMED OUT" not in report
    for step in STEPS:
        assert f"\n## {step}. " in report
    assert "torch " in report and "Versions:" in report
    merged = report.split("## 1. Training throughput, merged")[1].split("\n## ")[0]
    for impl in ("qkv", "torch"):
        assert re.search(rf"^\| {impl} eager \| [\d.]+ \| [\d,]+ \|", merged, flags=re.MULTILINE), merged
    assert "qkv / best other (eager): **" in merged
    attention = report.split("\n## 2. ")[1].split("\n## ")[0]
    assert "fused overhead" in attention and "%" in attention
    decode = report.split("\n## 3. ")[1].split("\n## ")[0]
    assert "qkv greedy" in decode
    train = report.split("\n## 4. ")[1].split("\n## ")[0]
    assert "10 steps" in train
    assert re.search(r"^\| best \| [\d.]+ \| [\d.]+ \| [\d.]+ \| 5 \| 16 \|", train, flags=re.MULTILINE), train
    assert "Table 1, measured" in report.split("\n## 5. ")[1]


def test_a_failing_step_is_recorded_and_the_script_goes_on(tmp_path):
    data = tiny_corpus(tmp_path / "multi30k", n_train=20, n_test=4)
    python = fake_python(tmp_path, 'echo "boom: $*" >&2; exit 3')
    done, report = run_script(tmp_path, QKV_DATA=str(data), QKV_PYTHON=python)
    assert done.returncode == 1
    rows = step_rows(report)
    assert list(rows) == list(STEPS)
    assert all(rows[s] == "**FAILED** (exit 3)" for s in ("1a", "2", "3", "4", "5")), rows
    assert "boom: bench/attention.py --device cpu" in report  # the error tail of step 2


def test_a_slow_step_is_cut_by_its_timeout_and_the_budget_skips_the_rest(tmp_path):
    python = fake_python(tmp_path, "exec sleep 60")
    done, report = run_script(tmp_path, QKV_PYTHON=python, QKV_GPU_TOTAL="6", QKV_DATA=str(tmp_path / "none"))
    assert done.returncode == 1
    rows = step_rows(report)
    assert rows["1a"].startswith("**TIMED OUT** after")
    assert rows["2"] == rows["3"] == rows["5"] == "skipped: the total budget is spent"
    assert rows["4"].startswith("**FAILED**: no Multi30k found")


def test_steps_can_be_chosen(tmp_path):
    python = fake_python(tmp_path, 'echo "boom" >&2; exit 3')
    done, report = run_script(tmp_path, QKV_PYTHON=python, QKV_GPU_STEPS="1,5", QKV_GPU_COMPILE="1")
    assert done.returncode == 1
    rows = step_rows(report)
    assert list(rows) == list(STEPS)
    assert all(rows[s] == "**FAILED** (exit 3)" for s in ("1b", "1c", "1d", "5")), rows
    assert rows["1a"] == "skipped: 1b-1d measure the eager rows"  # compiling on: each of 1b-1d runs eager too
    assert rows["2"] == rows["3"] == rows["4"] == "skipped: not in QKV_GPU_STEPS=1,5"


def load_gpu_report():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_report", ROOT / "bench" / "gpu_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def throughput_output(rows: list[tuple[str, float]], extra: str = "") -> str:
    """A ``train_throughput.py`` output in its own table format, with these (model, tokens/s) rows."""
    lines = ["torch 2.11.0 | python 3.12", "model  step ms  tgt tokens/s  MFU  peak mem (cuda max allocated)  "
             "warmup s  host sync in step", "-----  -------  ------------  ---  -----  --------  -----"]
    lines += [f"{name:>14}  10.0  {tps:,.0f}  30.0%  1.00 GB  2.0  none" for name, tps in rows]
    return "\n".join(lines) + "\n" + extra


def test_the_throughput_tables_are_merged(tmp_path):
    gpu_report = load_gpu_report()
    eager = tmp_path / "1a.out"
    eager.write_text(throughput_output([("qkv eager", 1000), ("torch eager", 800), ("marian eager", 900)]))
    qkv = tmp_path / "1b.out"
    qkv.write_text(throughput_output([("qkv eager", 1111), ("qkv compiled", 2000)]))
    torch_log = tmp_path / "1c.out"
    torch_log.write_text(throughput_output([("torch eager", 777)], "torch compiled: failed: BackendCompilerFailed"))
    marian = tmp_path / "1d.out"
    marian.write_text(throughput_output([("marian eager", 950), ("marian compiled", 1600)]))
    table = gpu_report.throughput(eager, [qkv, torch_log, marian, tmp_path / "missing.out"])
    assert "| qkv eager | 10.0 | 1,000 |" in table  # eager rows from the side-by-side run
    assert "| qkv compiled | 10.0 | 2,000 |" in table
    assert "| torch compiled | not measured |" in table
    assert "(eager): **1.11×** (qkv eager vs marian eager)" in table
    assert "(compiled): **1.25×** (qkv compiled vs marian compiled)" in table
    assert "(best of each): **1.25×**" in table
    assert gpu_report.throughput(tmp_path / "none.out", []).startswith("No throughput table")
