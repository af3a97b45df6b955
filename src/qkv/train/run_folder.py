"""A run folder is never reused by accident: a new run starts only in an empty (or new) folder.

:func:`claim_run_folder` takes the folder's :class:`~qkv.train.runlock.RunLock` and then checks the folder:
a new run (neither ``resume`` nor ``overwrite``) into a folder that holds anything is refused with one line
(``--resume`` to continue, ``--overwrite`` to start afresh); ``overwrite`` clears the folder first (after the
lock is held, so that no live run is cleared); ``resume`` needs a run to continue. Under torchrun only rank 0
locks, checks and clears (when it refuses, torchrun stops the others).

Example:
    >>> with claim_run_folder("runs/de-en", resume=False, overwrite=False):   # doctest: +SKIP
    ...     train(...)
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qkv.train.runlock import RunLock

#: Entries that mark a folder as holding a run: translation runs (``last/`` …) or a classifier checkpoint.
RUN_ENTRIES = ("last", "best", "averaged", "checkpoints", "results.json", "model.safetensors", "options.json",
               ".last.tmp", ".last.old")


#: What a run that failed before training leaves (its logs): not a run, so a new one may start over them.
LOG_ENTRIES = ("metrics.jsonl", "train.log", "curves.png", "tensorboard")


def run_entries(folder: str | Path) -> list[str]:
    """The names in ``folder`` (sorted; ``[]`` when it is missing or empty)."""
    folder = Path(folder)
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def holds_run(folder: str | Path) -> bool:
    """Whether ``folder`` holds a run's files (see :data:`RUN_ENTRIES`)."""
    return any(name in RUN_ENTRIES for name in run_entries(folder))


def check_run_folder(folder: str | Path, *, resume: bool, overwrite: bool, can_resume: bool = True) -> None:
    """Refuse a new run into a non-empty folder, ``resume`` without a run, and ``resume`` with ``overwrite``."""
    folder = Path(folder)
    if resume and overwrite:
        raise ValueError("--resume continues the run in --out, --overwrite deletes it: give one of them")
    entries = run_entries(folder)
    if resume or overwrite or all(name in LOG_ENTRIES for name in entries):  # empty, or a failed start's logs
        return
    shown = ", ".join(entries[:6]) + (f", … ({len(entries)} entries)" if len(entries) > 6 else "")
    what = "holds a run" if holds_run(folder) else "is not empty"
    hint = "--resume to continue it, " if can_resume and holds_run(folder) else ""
    raise ValueError(f"--out {folder} {what} ({shown}): {hint}--overwrite to start afresh (deletes everything "
                     "in it), or choose another --out")


def clear_folder(folder: str | Path) -> int:
    """Delete everything inside ``folder`` (kept itself); returns how many entries went. Refuses the current
    working directory, a folder above it, and the home folder."""
    folder = Path(folder).resolve()
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if folder in (cwd, home) or folder in cwd.parents:
        raise ValueError(f"--overwrite will not clear {folder} (the current folder, one above it, or home): "
                         "give the run's own folder")
    entries = list(folder.iterdir()) if folder.is_dir() else []
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return len(entries)


@contextmanager
def claim_run_folder(folder: str | Path, *, resume: bool, overwrite: bool, can_resume: bool = True,
                     is_main: bool = True) -> Iterator[RunLock]:  # fmt: skip
    """Lock ``folder`` for the ``with`` block, check it (:func:`check_run_folder`) and, with ``overwrite``,
    clear it. ``is_main=False`` (torchrun ranks > 0) does none of this.

    Raises:
        RunLocked: another live run holds the folder (the message names its process id).
        ValueError: the folder holds something and neither ``resume`` nor ``overwrite`` was given.
    """
    lock = RunLock(folder, enabled=is_main)
    with lock:
        if is_main:
            check_run_folder(folder, resume=resume, overwrite=overwrite, can_resume=can_resume)
            if overwrite:
                lock.cleared = clear_folder(folder)
        yield lock
