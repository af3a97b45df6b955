"""One run per run folder: an exclusive lock held for the run's whole life.

The lock is a file beside the folder, ``PARENT/.NAME.lock`` (beside, not inside: a classifier's run folder is
itself a checkpoint, replaced by an atomic rename on every save, and ``--overwrite`` clears the folder). It
holds the owner's process id and is locked with ``fcntl.flock``, which the operating system releases when the
process ends in any way (an exception, SIGTERM, ``kill -9``, a power cut of the process): a lock file left by
a dead process is therefore not locked, and the next run takes it over. Where ``fcntl`` is missing (Windows)
the file is created exclusively and a stale one is recognised by its process id no longer running.

Example:
    >>> with RunLock("runs/de-en"):          # doctest: +SKIP
    ...     train(...)                       # a second run on runs/de-en fails at once, naming this one's pid
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class RunLocked(ValueError):
    """Another live process holds the run folder."""


def lock_path(folder: str | Path) -> Path:
    """``PARENT/.NAME.lock`` for the run folder ``PARENT/NAME``."""
    folder = Path(folder).resolve()
    return folder.parent / f".{folder.name}.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _owner(text: str) -> str:
    """``"process 1234 on host"`` from a lock file's contents."""
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return f"process {fields.get('pid', '?')} on {fields.get('host', '?')}"


class RunLock:
    """An exclusive lock on a run folder; a context manager (``acquire`` / ``release`` also work).

    Args:
        folder: the run folder (need not exist yet).
        enabled: ``False`` makes the lock a no-op (torchrun ranks other than 0: rank 0 holds it for all).

    While held, SIGTERM ends the process with a ``KeyboardInterrupt`` in the main thread, so that ``finally``
    blocks run and the lock file is removed (the lock itself would be released anyway).

    Raises:
        RunLocked: on ``acquire``, when a live process holds the lock; the message names its process id.
    """

    def __init__(self, folder: str | Path, *, enabled: bool = True) -> None:
        self.folder, self.path, self.enabled = Path(folder), lock_path(folder), enabled
        self._fd: int | None = None
        self._old_handler = None
        self.took_over: str | None = None  # the owner of a stale lock that was taken over
        self.cleared = 0  # entries deleted by claim_run_folder(overwrite=True)

    def acquire(self) -> RunLock:
        if not self.enabled or self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._lock_flock() if fcntl is not None else self._lock_exclusive()
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"pid={os.getpid()}\nhost={socket.gethostname()}\n".encode())
        os.fsync(self._fd)
        if threading.current_thread() is threading.main_thread():
            self._old_handler = signal.signal(signal.SIGTERM, _interrupt)
        return self

    def _lock_flock(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
                os.close(fd)
                raise RunLocked(self._busy(_owner(text))) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a file its last owner unlinked between our open and our flock
                break
            os.close(fd)
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        self.took_over = _owner(text) if text.strip() else None
        return fd

    def _lock_exclusive(self) -> int:  # pragma: no cover - without fcntl
        for _ in range(2):
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                text = self.path.read_text(encoding="utf-8", errors="replace")
                pid = dict(line.split("=", 1) for line in text.splitlines() if "=" in line).get("pid", "")
                if pid.isdigit() and _pid_alive(int(pid)):
                    raise RunLocked(self._busy(_owner(text))) from None
                self.took_over = _owner(text)
                self.path.unlink(missing_ok=True)
        raise RunLocked(self._busy("another process"))

    def _busy(self, owner: str) -> str:
        return (f"{self.folder} is in use by another run ({owner}; lock {self.path}): wait for it to end, or "
                "choose another --out")

    def release(self) -> None:
        if self._fd is None:
            return
        if self._old_handler is not None:
            signal.signal(signal.SIGTERM, self._old_handler)
            self._old_handler = None
        self.path.unlink(missing_ok=True)  # while still locked: no one else is using this file
        os.close(self._fd)  # releases the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
