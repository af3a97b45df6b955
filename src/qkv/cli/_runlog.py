"""What a training command leaves in its run folder besides checkpoints: ``train.log`` (everything it printed
and logged), ``metrics.jsonl`` (one JSON object per log / validation / epoch / test event), TensorBoard events
(``--tensorboard``) and ``curves.png`` (drawn at the end, as ``qkv plot`` does).

    with RunLog(out, resume=args.resume, tensorboard=args.tensorboard) as run:
        train(..., callback=run)          # or fit(on_epoch=run.epochs(print_fn), on_step=run.steps())
        run({"event": "test", "step": ..., "bleu": ...})

A resumed run (``resume=True``) appends to both files; a fresh one starts them anew. Where OUT is itself a
checkpoint folder, replaced whole by each save (``qkv classify`` / ``qkv vit``), ``staged=True`` keeps the files
beside it while the command runs and moves them in at the end.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from tqdm.contrib.logging import logging_redirect_tqdm

from qkv.train.metrics import Event, JsonlSink, MetricSinks, StepWindow, TensorBoardSink

LOG_FORMAT = "%(asctime)s %(message)s"


def add_tensorboard_option(p) -> None:
    """``--tensorboard``: also write TensorBoard events to OUT/tensorboard/."""
    p.add_argument(
        "--tensorboard", action="store_true",
        help="also write TensorBoard events to OUT/tensorboard/ (needs tensorboard; metrics.jsonl is always written)",
    )  # fmt: skip


class _Tee:
    """A text stream writing to ``stream`` and to ``copy``; everything else (isatty, fileno …) is ``stream``'s."""

    def __init__(self, stream: TextIO, copy: TextIO) -> None:
        self._stream, self._copy = stream, copy

    def write(self, text: str) -> int:
        self._copy.write(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._copy.flush()
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class RunLog:
    """The metrics log, the printed log and TensorBoard of one command, as a context manager and an event sink.

    Args:
        out: the run folder (created).
        resume: append to ``train.log`` / ``metrics.jsonl`` instead of starting them anew.
        tensorboard: also write TensorBoard events to ``out/tensorboard``.
        enabled: ``False`` (other ranks of a torchrun job) makes every method a no-op.
        curves: draw ``out/curves.png`` from ``metrics.jsonl`` when the block ends without an error.
        staged: write into ``.OUT.log-tmp`` beside ``out`` and move the files into ``out`` when the block ends
            (for a checkpoint folder that saving replaces whole).
    """

    def __init__(self, out: str | Path, *, resume: bool = False, tensorboard: bool = False, enabled: bool = True,
                 curves: bool = True, staged: bool = False) -> None:  # fmt: skip
        self.out, self.resume, self.tensorboard = Path(out), resume, tensorboard
        self.enabled, self.curves, self.staged = enabled, curves, staged
        self.dir = self.out.parent / f".{self.out.name}.log-tmp" if staged else self.out
        self.sinks = MetricSinks()
        self.last_step_at: float | None = None  # time.time() of the last optimizer step seen (a "step" event)

    def __enter__(self) -> RunLog:
        if not self.enabled:
            return self
        if self.staged:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._file = (self.dir / "train.log").open("a" if self.resume else "w", encoding="utf-8", buffering=1)
        self._handler = logging.StreamHandler(self._file)
        self._handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
        self._logger = logging.getLogger("qkv")
        self._level = self._logger.level
        if self._logger.getEffectiveLevel() > logging.INFO:  # the qkv.* INFO lines must reach the file
            self._logger.setLevel(logging.INFO)
        self._logger.addHandler(self._handler)
        self._stdout = sys.stdout
        sys.stdout = _Tee(sys.stdout, self._file)
        self._redirect = logging_redirect_tqdm()  # log lines on the console go above a progress bar, not through it
        self._redirect.__enter__()
        try:
            self.sinks.sinks.append(JsonlSink(self.dir / "metrics.jsonl", append=self.resume))
            if self.tensorboard:
                self.sinks.sinks.append(TensorBoardSink(self.dir / "tensorboard"))
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if not self.enabled:
            return
        try:
            self.sinks.close()
            if kind is not None:  # main() prints the one-line error after this block: keep it in the log too
                self._file.write(f"error: {value or kind.__name__}\n")
            if kind is None and self.curves:
                from qkv.viz.curves import plot_run  # matplotlib: imported only when drawing

                path = plot_run(self.dir)
                if path is not None:
                    print(f"curves: {self.out / path.name}")
        finally:
            self._restore()
            if self.staged:
                self._move_in()

    def _move_in(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for path in self.dir.iterdir():
            target = self.out / path.name
            if target.is_dir():
                shutil.rmtree(target)
            shutil.move(str(path), str(target))
        self.dir.rmdir()

    def _restore(self) -> None:
        self._redirect.__exit__(None, None, None)
        sys.stdout = self._stdout
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._level)
        self._file.close()

    def __call__(self, event: Event) -> None:
        """Record one event (the ``callback`` of :func:`qkv.train.train`)."""
        if event.get("event") == "step":
            self.last_step_at = time.time()
        if self.enabled:
            self.sinks(event)

    def epochs(self, show: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        """An ``on_epoch`` for :func:`qkv.train.fit.fit`: ``show(record)`` (prints it), then records it."""

        def on_epoch(record: dict[str, Any]) -> None:
            show(record)
            self({"event": "epoch", **record})

        return on_epoch

    def steps(self, every: int = 20) -> StepWindow:
        """An ``on_step`` for :func:`qkv.train.fit.fit`: a ``log`` event (mean loss) every ``every`` steps."""
        return StepWindow(self, every)
