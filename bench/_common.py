"""Timing helpers shared by the benchmark scripts in ``bench/`` (not part of the library).

Run a script as ``python bench/<name>.py``; it imports this module as ``_common`` (``bench/`` is on
``sys.path`` then). Everything here is device-agnostic:

- on CUDA, time is measured with CUDA events recorded around every iteration and read after one final
  ``torch.cuda.synchronize()`` -- no host synchronisation between iterations, so the GPU queue stays full;
- on CPU, with ``time.perf_counter`` around every iteration.

Reported times are medians over iterations (robust to the other processes of a shared machine).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch


def pick_device(name: str | None) -> torch.device:
    """``"auto"``/``None`` -> cuda if available (then mps), else cpu; otherwise the named device."""
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available in this torch build ({torch.__version__})")
    return device


def add_device_options(parser: argparse.ArgumentParser, dtype_help: str | None = None) -> None:
    """``--device`` and ``--threads``, and ``--dtype`` when ``dtype_help`` is given: see :func:`setup_device`."""
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 … (default: cuda if available)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is steadier on a shared machine)")
    if dtype_help is not None:
        parser.add_argument("--dtype", choices=sorted(DTYPES), help=dtype_help)


def setup_device(args: argparse.Namespace) -> tuple[torch.device, torch.dtype]:
    """Apply the options of :func:`add_device_options`: the device, torch's CPU threads, and the dtype
    (``--dtype``, else bf16 on CUDA and fp32 elsewhere)."""
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(args, "dtype", None) or ("bf16" if device.type == "cuda" else "fp32")
    return device, DTYPES[dtype]


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on ``device`` (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass
class Timing:
    """Per-iteration times in seconds."""

    times: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times)

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median: how noisy the measurement was."""
        if len(self.times) < 4:
            return 0.0
        q = statistics.quantiles(self.times, n=4)
        return (q[2] - q[0]) / self.median


def benchmark(fn: Callable[[], object], device: torch.device, *, warmup: int = 3, iters: int = 10) -> Timing:
    """Time ``fn()`` ``iters`` times after ``warmup`` untimed calls.

    On CUDA each iteration is bracketed by CUDA events and the host synchronises once, at the end; on CPU
    (and MPS) each iteration is synchronised and timed with ``perf_counter``.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    if device.type == "cuda":
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        for start, end in zip(starts, ends):
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
        return Timing([s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends)])
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return Timing(times)


def compare(
    fns: dict[str, Callable[[], object]], device: torch.device, *, warmup: int = 3, iters: int = 10
) -> dict[str, Timing]:
    """Time several functions. On CPU round-robin (one call of each per round), so that a change of load on a
    shared machine hits all of them alike; on CUDA one after the other, each with :func:`benchmark`."""
    if device.type == "cuda":
        return {name: benchmark(fn, device, warmup=warmup, iters=iters) for name, fn in fns.items()}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            times[name] += benchmark(fn, device, warmup=0, iters=1).times
    return {name: Timing(t) for name, t in times.items()}


def matmul_flops(device: torch.device, dtype: torch.dtype, n: int | None = None, iters: int = 10) -> float:
    """The measured dense matmul rate (FLOP/s) of ``device`` in ``dtype``: the denominator of MFU.

    An ``n × n @ n × n`` product is ``2 n³`` FLOPs. Default ``n``: 8192 on CUDA, 1024 elsewhere.
    """
    if n is None:
        n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    timing = benchmark(lambda: a @ b, device, warmup=3, iters=iters)
    return 2 * n**3 / timing.median


# -- memory -------------------------------------------------------------------------------------------------
def _rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


class PeakMemory:
    """Peak memory over a block: ``torch.cuda.max_memory_allocated`` on CUDA, sampled RSS on CPU.

    On CPU a thread samples the process RSS every ``interval`` seconds (torch kernels release the GIL, so
    the sampler runs during them). It is the whole process, Python and the other models included.

    Example:
        >>> with PeakMemory(device) as mem:
        ...     step()
        >>> mem.peak_bytes
    """

    def __init__(self, device: torch.device, interval: float = 0.002) -> None:
        self.device = device
        self.interval = interval
        self.peak_bytes = 0
        self.kind = "cuda max allocated" if device.type == "cuda" else "process RSS"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, _rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak_bytes = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self.peak_bytes, _rss_bytes())


# -- precision --------------------------------------------------------------------------------
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on ``device`` (weights stay fp32, matmuls run in ``dtype``); a no-op for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# -- reporting --------------------------------------------------------------------------------
def environment() -> str:
    """One line naming the machine: torch version, device name, threads, load average."""
    parts = [f"torch {torch.__version__}", f"python {platform.python_version()}"]
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})")
    parts.append(f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    parts.append(f"torch threads {torch.get_num_threads()}")
    with contextlib.suppress(OSError, AttributeError):
        parts.append("load avg {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    return " | ".join(parts)


def format_table(rows: Sequence[dict[str, object]], columns: Sequence[str]) -> str:
    """Plain-text table, one row per dict; floats already formatted by the caller as they should appear."""
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def human(n: float, unit: str = "") -> str:
    """``1.23e9 -> '1.23 G'``."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {prefix}{unit}"
    return f"{n:.2f} {unit}"


@contextlib.contextmanager
def sync_debug(device: torch.device, mode: str = "warn") -> Iterator[None]:
    """Make CUDA warn (or error) on every host synchronisation inside the block; a no-op off CUDA.

    Used around a training step to show the step queues all its work without waiting for the GPU.
    """
    if device.type != "cuda":
        yield
        return
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)
