"""The metrics log of every training command: OUT/metrics.jsonl, OUT/train.log, TensorBoard, resume appends;
the sinks of qkv.train.metrics; progress bars only on a terminal."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import re
import sys
from types import SimpleNamespace

import pytest

from qkv.cli import main
from qkv.cli._progress import BudgetBar, progress_factory, train_progress
from qkv.data.synthetic import write_demo_corpus
from qkv.train.metrics import JsonlSink, MetricSinks, StepWindow, TensorBoardSink, read_metrics

TRAIN_FIELDS = {"event", "step", "epoch", "loss", "nll", "ppl", "lr", "tokens_per_second", "time", "elapsed"}


# -- the sinks ------------------------------------------------------------------------------------------------
def test_jsonl_sink_writes_events_and_appends(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"
    sink = JsonlSink(path, append=False)
    sink({"event": "step", "step": 1, "loss": 1.0})  # per-step events are left out
    sink({"event": "log", "step": 2, "loss": 0.5, "ppl": float("inf")})
    sink({"event": "valid", "step": 2, "bleu": 3.5, "path": tmp_path})
    sink.close()
    events = read_metrics(path.parent)
    assert [e["event"] for e in events] == ["log", "valid"]
    assert events[0]["ppl"] is None  # strict JSON: no Infinity
    assert events[1]["path"] == str(tmp_path) and events[1]["elapsed"] >= events[0]["elapsed"] >= 0
    assert all(isinstance(e["time"], float) for e in events)

    again = JsonlSink(path, append=True)  # a resumed run: appended, the clock continues
    again({"event": "log", "step": 3, "loss": 0.4})
    again.close()
    events = read_metrics(path)
    assert [e["step"] for e in events] == [2, 2, 3] and events[2]["elapsed"] >= events[1]["elapsed"]

    fresh = JsonlSink(path, append=False)
    fresh.close()
    assert read_metrics(path) == []


def test_read_metrics_errors_name_the_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"event": "log"}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON object"):
        read_metrics(path)
    path.write_text('{"event": "log"}\n{oops\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON object"):
        read_metrics(path)
    path.write_text('{"event": "log"}\n{"event": "va')  # being written
    assert read_metrics(path) == [{"event": "log"}]
    with pytest.raises(FileNotFoundError, match="no metrics log"):
        read_metrics(tmp_path / "nowhere")


def test_step_window_and_fan_out():
    seen_a, seen_b = [], []
    window = StepWindow(MetricSinks(seen_a.append, seen_b.append), every=2)
    for step, loss in enumerate([4.0, 2.0, 1.0, 3.0, 9.0], start=1):
        window(step, loss)
    assert [(e["step"], e["loss"]) for e in seen_a] == [(2, 3.0), (4, 2.0)]  # means of each window
    assert seen_a == seen_b and all(e["event"] == "log" and e["steps_per_second"] > 0 for e in seen_a)
    with pytest.raises(ValueError, match="every"):
        StepWindow(seen_a.append, every=0)


def test_tensorboard_sink_writes_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sink = TensorBoardSink(tmp_path / "tb")
    sink({"event": "log", "step": 10, "epoch": 1, "loss": 2.5, "lr": 1e-3})
    sink({"event": "valid", "step": 10, "bleu": 7.0, "best": True})
    sink({"event": "test", "step": 10, "checkpoint": "best", "bleu": 6.0, "bleu_signature": "nrefs:1"})
    sink({"event": "step", "step": 11, "loss": 1.0})  # not a group TensorBoard gets
    sink.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert tags == {"train/loss", "train/lr", "valid/bleu", "test/best/bleu"}
    assert [(s.step, s.value) for s in acc.Scalars("valid/bleu")] == [(10, 7.0)]


# -- progress -------------------------------------------------------------------------------------------------
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal(monkeypatch):
    args = SimpleNamespace(no_progress=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_factory(args) is None and train_progress(args, 2.0) is None
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert progress_factory(args) is not None and train_progress(args, 2.0) is not None
    assert progress_factory(SimpleNamespace(no_progress=True)) is None


def test_budget_bar_estimates_a_total_from_the_time_limit():
    screen = io.StringIO()
    bar = BudgetBar(total=None, minutes=10.0, file=screen, mininterval=0)
    bar.update(5)
    assert bar.total is not None and 5 < bar.total < math.inf  # an ETA although only minutes limit the run
    capped = BudgetBar(total=8, minutes=10.0, file=screen, mininterval=0)
    capped.update(5)
    assert capped.total == 8  # the step limit comes first
    bar.close()
    capped.close()


# -- the commands ---------------------------------------------------------------------------------------------
TINY = ["--preset", "tiny", "--lr-schedule", "inverse_sqrt", "--lr", "2e-3", "--warmup", "2", "--log-every", "2",
        "--device", "cpu", "--tokenizer", "word", "--separate-vocab", "--max-tokens", "256", "--average-last", "1",
        "--test-beam", "1"]  # fmt: skip


def test_train_writes_metrics_log_tensorboard_and_appends_on_resume(tmp_path, capsys):
    data = write_demo_corpus(tmp_path / "data", n_train=60, n_val=4, n_test=4, seed=3)
    out = tmp_path / "run"
    argv = ["train", "--data", str(data), "--src", "words", "--tgt", "iso", "--out", str(out), *TINY]
    tensorboard = importlib.util.find_spec("tensorboard") is not None  # the tensorboard extra (CI installs it)
    assert main([*argv, "--max-steps", "4", "--eval-every", "2", *["--tensorboard"] * tensorboard]) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "step/s" not in captured.err  # no bar: stderr is not a terminal

    events = read_metrics(out)
    logs = [e for e in events if e["event"] == "log"]
    assert [e["step"] for e in logs] == [2, 4] and set(logs[0]) >= TRAIN_FIELDS
    valid = [e for e in events if e["event"] == "valid"]
    assert {e["step"] for e in valid} == {2, 4} and all("bleu" in e and "loss" in e for e in valid)
    test = [e for e in events if e["event"] == "test"]
    assert [e["checkpoint"] for e in test] == ["best"] and "bleu" in test[0] and test[0]["step"] == 4

    log = (out / "train.log").read_text()
    assert "train | step 2" in log and "valid | step 4" in log  # the logged lines
    assert "test (best, beam 1, α 0.6)" in log and "done in" in log  # the printed ones
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "tensorboard").glob("events.out.tfevents.*")) or not tensorboard

    before = (out / "metrics.jsonl").read_text()
    assert main([*argv, "--resume", "--max-steps", "6", "--no-test", "--no-bleu"]) == 0
    after = (out / "metrics.jsonl").read_text()
    assert after.startswith(before) and len(after) > len(before)  # appended, not overwritten
    assert [e["step"] for e in read_metrics(out) if e["event"] == "log"] == [2, 4, 6]
    resumed_log = (out / "train.log").read_text()
    assert resumed_log.startswith(log) and "from step 4" in resumed_log


def test_a_failed_run_logs_its_error(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "nowhere"), "--src", "de", "--tgt", "en", "--out", str(out), *TINY]
    assert main(argv) == 2
    assert "nowhere" in capsys.readouterr().err and "nowhere" in (out / "train.log").read_text().splitlines()[-1]
    assert not (out / "curves.png").exists()


def test_max_minutes_says_what_follows_the_budget(tmp_path):
    data = write_demo_corpus(tmp_path / "data", n_train=30, n_val=2, n_test=2, seed=4)
    out = tmp_path / "run"
    argv = ["train", "--data", str(data), "--src", "words", "--tgt", "iso", "--out", str(out), *TINY,
            "--max-minutes", "5", "--max-steps", "1", "--no-bleu"]  # fmt: skip
    assert main(argv) == 0
    log = (out / "train.log").read_text()
    assert "--max-minutes 5: training stops at about" in log and "outside the budget" in log
    # the actual split, at the end
    assert re.search(r"done in [\d.]+ min \(data and model [\d.]+, training [\d.]+, last validation [\d.]+, "
                     r"averaging [\d.]+, test [\d.]+\)", log)  # fmt: skip


def _sst2_like(folder):
    rows = ["label\tsentence"]
    for i in range(24):
        rows.append(f"1\ta great and wonderful film {i}" if i % 2 else f"0\ta dull and awful mess {i}")
    (folder / "train.tsv").write_text("\n".join(rows) + "\n")
    (folder / "dev.tsv").write_text("label\tsentence\n1\twonderful film\n0\tawful mess\n")


@pytest.mark.parametrize("action", ["train", "pretrain"])
def test_classify_writes_metrics_into_the_model_folder(tmp_path, capsys, action):
    _sst2_like(tmp_path)
    out = tmp_path / "model"
    argv = ["classify", action, "--data", str(tmp_path), "--out", str(out), "--preset", "tiny", "--epochs", "2",
            "--batch-size", "4", "--vocab-size", "60"]  # fmt: skip
    assert main(argv) == 0
    events = read_metrics(out)
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2] and all("loss" in e for e in epochs)
    assert ("dev_acc" if action == "train" else "accuracy") in epochs[-1]
    assert [e["step"] for e in events if e["event"] == "log"] == []  # 12 steps: no window of 20 completed
    assert "epoch 2:" in (out / "train.log").read_text()
    assert (out / "model.safetensors").is_file() and (out / "curves.png").is_file()  # the save kept the logs
    assert not list(tmp_path.glob(".model.log-tmp"))
    assert "\r" not in capsys.readouterr().err


def test_json_lines_are_plain_json(tmp_path):
    sink = JsonlSink(tmp_path / "m.jsonl", append=False)
    sink({"event": "valid", "step": 1, "loss": float("nan"), "values": (1, 2.5)})
    sink.close()
    line = (tmp_path / "m.jsonl").read_text().strip()
    assert json.loads(line)["loss"] is None and json.loads(line)["values"] == [1, 2.5] and "NaN" not in line


def test_vit_train_records_epochs_and_test_accuracy(tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "vit"
    assert main(["vit", "train", "--out", str(out), "--epochs", "1", "--preset", "digits", "--no-progress"]) == 0
    events = read_metrics(out)
    assert [e["event"] for e in events if e["event"] != "log"] == ["epoch", "test"]
    assert 0 <= events[-1]["accuracy"] <= 1 and "dev_acc" in events[-2]
    assert "test accuracy" in (out / "train.log").read_text() and (out / "config.json").is_file()
