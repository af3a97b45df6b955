"""`qkv plot` and qkv.viz.curves: the curves of a metrics log, drawn into an image."""

from __future__ import annotations

import json

import pytest

from qkv.cli import main
from qkv.viz.curves import plot_curves, plot_run, series

PNG = b"\x89PNG\r\n\x1a\n"


def write_log(folder, events) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


TRANSLATION = [
    {"event": "log", "step": 100, "loss": 5.0, "nll": 4.8},
    {"event": "log", "step": 200, "loss": 4.0, "nll": 3.8},
    {"event": "valid", "step": 200, "loss": 4.2, "bleu": 3.1},
    {"event": "log", "step": 300, "loss": 3.5},
    {"event": "valid", "step": 300, "loss": 3.9, "bleu": 6.4},
    {"event": "test", "step": 300, "checkpoint": "best", "bleu": 6.0},
]


def test_series_picks_numbers_of_one_kind():
    assert series(TRANSLATION, "valid", "bleu") == ([200, 300], [3.1, 6.4])
    assert series(TRANSLATION, "log", "loss") == ([100, 200, 300], [5.0, 4.0, 3.5])
    assert series([{"event": "valid", "step": 1, "bleu": None}], "valid", "bleu") == ([], [])


def test_qkv_plot_writes_a_png(tmp_path, capsys):
    run = tmp_path / "run"
    write_log(run, TRANSLATION)
    assert main(["plot", str(run)]) == 0
    assert (run / "curves.png").read_bytes()[:8] == PNG
    assert "curves.png" in capsys.readouterr().out
    other = tmp_path / "figs" / "c.png"
    assert main(["plot", str(run / "metrics.jsonl"), "--out", str(other)]) == 0
    assert other.read_bytes()[:8] == PNG


def test_plot_of_a_classifier_run(tmp_path):
    run = tmp_path / "sst2"
    write_log(run, [{"event": "epoch", "epoch": e, "step": 10 * e, "loss": 1 / e, "train_acc": 0.5 + e / 10,
                     "dev_acc": 0.5 + e / 20} for e in (1, 2, 3)])  # fmt: skip
    assert plot_run(run).read_bytes()[:8] == PNG


def test_nothing_to_draw_is_a_clear_error(tmp_path, capsys):
    run = tmp_path / "empty"
    write_log(run, [{"event": "checkpoint", "step": 3}])
    assert plot_run(run) is None
    assert main(["plot", str(run)]) == 2
    assert "no loss or validation score" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "nowhere")]) == 2
    assert "no metrics log" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no loss or validation score"):
        plot_curves([], tmp_path / "x.png")
