"""Training curves from a run's ``metrics.jsonl`` (:mod:`qkv.train.metrics`): loss and validation scores
against the optimizer step, drawn with matplotlib (a bare Figure, no display needed).

Left: the training loss (``log`` events; per-epoch means of :func:`~qkv.train.fit.fit` runs) and the
validation loss. Right: the validation scores — BLEU (``valid``), dev / train / masked accuracy (``epoch``),
test BLEU of the final checkpoints (``test``, one marker each).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # a bare Figure (no pyplot): no display, no global state, thread-safe

from qkv.train.metrics import Event, read_metrics

#: (event kind, field, label, line style) drawn in the loss panel
LOSS_LINES = [("log", "loss", "train loss", "-"), ("epoch", "loss", "train loss (epoch mean)", "o-"),
              ("valid", "loss", "valid loss", "s-")]  # fmt: skip
#: the same for the score panel
SCORE_LINES = [("valid", "bleu", "valid BLEU", "s-"), ("epoch", "dev_acc", "dev accuracy", "o-"),
               ("epoch", "train_acc", "train accuracy", "o--"), ("epoch", "accuracy", "masked-token accuracy", "o-"),
               ("test", "bleu", "test BLEU", "*"), ("test", "accuracy", "test accuracy", "*")]  # fmt: skip


def series(events: Sequence[Event], kind: str, name: str) -> tuple[list[int], list[float]]:
    """``(steps, values)`` of field ``name`` over the events of ``kind`` that have both (numbers only)."""
    steps, values = [], []
    for e in events:
        value, step = e.get(name), e.get("step")
        if e.get("event") == kind and isinstance(value, int | float) and isinstance(step, int | float):
            steps.append(int(step))
            values.append(float(value))
    return steps, values


def _draw(ax: Any, events: Sequence[Event], lines: list[tuple[str, str, str, str]], ylabel: str) -> bool:
    drawn = False
    for kind, name, label, style in lines:
        steps, values = series(events, kind, name)
        if steps:
            ax.plot(steps, values, style, label=label, markersize=4 if style != "*" else 10)
            drawn = True
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if drawn:
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    else:
        ax.text(0.5, 0.5, f"no {ylabel} recorded", ha="center", va="center", transform=ax.transAxes)
    return drawn


def plot_curves(events: Sequence[Event], path: str | Path, *, title: str | None = None) -> Path:
    """Draw the loss and validation panels of ``events`` into ``path`` (PNG, or any format matplotlib writes).

    Raises:
        ValueError: ``events`` hold no loss and no score to draw.
    """
    fig = Figure(figsize=(11, 4), layout="constrained")
    loss_ax, score_ax = fig.subplots(1, 2)
    drawn = _draw(loss_ax, events, LOSS_LINES, "loss")
    drawn = _draw(score_ax, events, SCORE_LINES, "score") or drawn
    if not drawn:
        raise ValueError("the metrics log holds no loss or validation score to draw (was anything logged?)")
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def plot_run(run: str | Path, path: str | Path | None = None) -> Path | None:
    """Draw ``run/metrics.jsonl`` into ``path`` (default ``run/curves.png``); ``None`` when nothing is logged.

    Example:
        >>> plot_run("runs/de-en")                                                   # doctest: +SKIP
        PosixPath('runs/de-en/curves.png')
    """
    run = Path(run)
    events = read_metrics(run)  # a folder's metrics.jsonl, or the file itself
    folder = run.parent if run.is_file() else run
    if not any(series(events, k, n)[0] for k, n, _, _ in LOSS_LINES + SCORE_LINES):
        return None
    return plot_curves(events, path or folder / "curves.png", title=folder.name)
