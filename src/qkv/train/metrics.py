"""Where training events go: a JSON-lines metrics log and TensorBoard, as sinks for the trainers' callbacks.

:func:`qkv.train.train` calls its ``callback`` with event dicts (``{"event": "log", "step", "loss", "nll",
"ppl", "lr", "tokens_per_second", …}``, ``"valid"``, ``"step"``, ``"checkpoint"``) and :func:`qkv.train.fit.fit`
calls ``on_epoch`` / ``on_step``; the sinks here take those events and write them down. Nothing here prints.

    sink = MetricSinks(JsonlSink("runs/x/metrics.jsonl"), TensorBoardSink("runs/x/tensorboard"))
    train(model, pairs, valid, config, callback=sink)
    sink.close()

One line of ``metrics.jsonl`` per log / validation / epoch / test event, with the wall time added::

    {"event": "log", "step": 100, "epoch": 1, "loss": 5.91, "nll": 5.62, "ppl": 276.3, "lr": 0.0007, ...,
     "time": 1764599000.1, "elapsed": 61.2}
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

Event = dict[str, Any]

#: events too frequent (every step) or not metrics (checkpoint paths): left out of the metrics log by default
NOT_LOGGED = ("step", "checkpoint")


def _plain(value: Any) -> Any:
    """A JSON-friendly copy of ``value``: NaN/inf become ``None`` (strict JSON), paths and others ``str``."""
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # a 0-d tensor or numpy scalar
        return _plain(value.item())
    return str(value)


def read_metrics(path: str | Path) -> list[Event]:
    """The events of a ``metrics.jsonl`` file (or of the one in a run folder), in order; it may be read while
    a run writes it (an unfinished last line is left out).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line is not a JSON object (``"metrics.jsonl:12: not a JSON object"``).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics log at {path} (written by qkv train / classify / vit / demo)")
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")[:-1]  # a last line without its newline is still being written: left out
    events = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{i}: not a JSON object ({err.msg})") from None
        if not isinstance(event, dict):
            raise ValueError(f"{path}:{i}: not a JSON object")
        events.append(event)
    return events


class JsonlSink:
    """Append events to a JSON-lines file, one object a line, with ``time`` (Unix) and ``elapsed`` (seconds).

    Args:
        path: the file; its folder is created.
        append: keep what the file holds (a resumed run): ``elapsed`` then continues from its last event.
            ``False`` starts the file afresh.
        skip: event kinds not written (default: per-step events and checkpoint notices).

    Example:
        >>> sink = JsonlSink(tmp / "metrics.jsonl")                                # doctest: +SKIP
        >>> sink({"event": "valid", "step": 100, "bleu": 12.3}); sink.close()       # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, append: bool = True, skip: Iterable[str] = NOT_LOGGED) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.skip = frozenset(skip)
        offset = 0.0
        if append and self.path.is_file():
            previous = [e.get("elapsed") for e in read_metrics(self.path)]
            offset = next((float(e) for e in reversed(previous) if isinstance(e, int | float)), 0.0)
        self.start = time.monotonic() - offset
        self.file = self.path.open("a" if append else "w", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        if event.get("event") in self.skip or self.file.closed:
            return
        now = {"time": round(time.time(), 3), "elapsed": round(time.monotonic() - self.start, 3)}
        self.file.write(json.dumps(_plain({**event, **now})) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


_GROUPS = {"log": "train", "valid": "valid", "epoch": "epoch", "test": "test"}  # event -> TensorBoard group


class TensorBoardSink:
    """Write the numbers of each event as TensorBoard scalars (``torch.utils.tensorboard``; needs tensorboard).

    ``log`` events become ``train/<name>``, ``valid`` ``valid/<name>``, ``epoch`` records (of :func:`fit`)
    ``epoch/<name>`` and ``test`` ``test/<checkpoint>/<name>``, each at the event's ``step``.

    Raises:
        ImportError: tensorboard is not installed (one line saying what to install).
    """

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:  # torch raises ImportError naming tensorboard
            raise ImportError(f"--tensorboard needs the tensorboard package: pip install tensorboard ({err})") from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def __call__(self, event: Event) -> None:
        group = _GROUPS.get(event.get("event", ""))
        step = event.get("step")
        if group is None or not isinstance(step, int):
            return
        prefix = f"{group}/{event['checkpoint']}" if group == "test" and "checkpoint" in event else group
        for name, value in event.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and name not in ("event", "step", "epoch"):
                self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def close(self) -> None:
        self.writer.close()


class MetricSinks:
    """Several sinks behind one callable (the ``callback`` of :func:`qkv.train.train`); ``close()`` closes all."""

    def __init__(self, *sinks: Callable[[Event], None]) -> None:
        self.sinks = list(sinks)

    def __call__(self, event: Event) -> None:
        for sink in self.sinks:
            sink(event)

    def close(self) -> None:
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                close()


class StepWindow:
    """Turn :func:`~qkv.train.fit.fit`'s ``on_step(step, loss)`` calls into a ``log`` event every ``every``
    steps: the mean loss of the window and the steps per second.

    Example:
        >>> fit(..., on_step=StepWindow(sink, every=50))                  # doctest: +SKIP
    """

    def __init__(self, sink: Callable[[Event], None], every: int = 50) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.sink, self.every = sink, every
        self.losses: list[float] = []
        self.start = time.monotonic()

    def __call__(self, step: int, loss: float) -> None:
        self.losses.append(loss)
        if step % self.every == 0:
            seconds = max(time.monotonic() - self.start, 1e-9)
            mean = sum(self.losses) / len(self.losses)
            self.sink({"event": "log", "step": step, "loss": mean, "steps_per_second": len(self.losses) / seconds})
            self.losses, self.start = [], time.monotonic()
