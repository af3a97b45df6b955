"""Progress bars for the commands (tqdm): drawn on a terminal only, never when stderr is a file or a pipe.

The library takes a ``progress`` factory (called as ``tqdm`` is: ``total=``, ``desc=``, ``unit=`` …) and draws
nothing without one; the commands make it here. :class:`BudgetBar` is the training bar: with a time limit
(``--max-minutes``) its total is re-estimated from the speed so far, so the ETA is right whichever limit
comes first.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm


def add_progress_option(p) -> None:
    """``--no-progress`` (for commands that do not have it from the training options)."""
    p.add_argument("--no-progress", action="store_true", help="no progress bars (none are drawn off a terminal)")


def show_progress(args) -> bool:
    """Bars are wanted (no ``--no-progress``) and stderr is a terminal."""
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


def progress_factory(args, **defaults: Any) -> Callable[..., Any] | None:
    """A ``tqdm`` factory for the library's ``progress=`` arguments, or ``None`` (no bar) when not
    :func:`show_progress`. ``defaults`` (e.g. ``leave=False``) apply to every bar it makes."""
    if not show_progress(args):
        return None
    return functools.partial(tqdm, dynamic_ncols=True, **defaults)


class BudgetBar(tqdm):
    """A step bar that also knows a wall-time budget: its total is ``min(step limit, steps the speed so far
    reaches by the deadline)``, so ``{remaining}`` is an ETA even when only ``--max-minutes`` limits the run.

    Example:
        >>> bar = BudgetBar(total=None, minutes=2.0, unit="step")                 # doctest: +SKIP
    """

    def __init__(self, *args: Any, minutes: float | None = None, **kwargs: Any) -> None:
        self._budget = minutes * 60 if minutes else None
        self._step_total = kwargs.get("total")
        self._t0 = time.monotonic()
        self._n0 = kwargs.get("initial", 0)
        super().__init__(*args, **kwargs)

    def update(self, n: float | None = 1) -> bool | None:
        if self._budget is not None and not self.disable:
            elapsed = time.monotonic() - self._t0
            done = self.n + (n or 0) - self._n0
            if elapsed > 0 and done > 0:
                by_time = self.n + (n or 0) + done / elapsed * max(self._budget - elapsed, 0.0)
                self.total = math.ceil(min(by_time, self._step_total or math.inf))
        return super().update(n)

    def close(self) -> None:
        if self._budget is not None and not self.disable and time.monotonic() - self._t0 >= self._budget:
            self.total = self.n  # stopped by the time limit: the run is complete
            self.refresh()
        super().close()


def train_progress(args, minutes: float | None) -> Callable[..., Any] | None:
    """The factory for :func:`qkv.train.train`'s bar (a :class:`BudgetBar`), or ``None`` when not shown."""
    if not show_progress(args):
        return None
    return functools.partial(BudgetBar, minutes=minutes)
