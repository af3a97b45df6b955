"""The comparison of §4 and Table 1 of the paper ("Why Self-Attention"), measured.

Table 1 compares one self-attention layer with one recurrent layer, for sequence length n and width d:

    Layer type       Complexity per layer   Sequential operations   Maximum path length
    Self-Attention   O(n²·d)                O(1)                    O(1)
    Recurrent        O(n·d²)                O(n)                    O(n)

This script measures each column on one layer: ``qkv.MultiHeadAttention`` as self-attention, on its explicit
path (``need_weights=True``: the (B, H, n, n) weights are materialised) and its fused path
(``need_weights=False``: ``F.scaled_dot_product_attention``), against one ``torch.nn.LSTM`` layer.

1. Time of forward and of forward + backward for n = 16 … (caps per layer: ``--n-max-attention``,
   ``--n-max-lstm``) at fixed d, and the log-log slope of time vs n over the largest n (expect ~2 for
   attention once n ≫ d, ~1 for the LSTM).
2. Peak memory of forward + backward: ``torch.cuda.max_memory_allocated`` on CUDA; on the CPU (where
   tracemalloc cannot see torch's allocations) the rise of the process's peak resident set size
   (``VmHWM``, reset through ``/proc/self/clear_refs``, minus ``VmRSS`` just before the pass; Linux).
   Also, exactly and on any device, the bytes the layer keeps for its backward pass (tensors saved by
   autograd, counted once per storage through ``torch.autograd.graph.saved_tensors_hooks``).
3. Time vs d at fixed n (``--d-sweep``, ``--d-sweep-n``): the LSTM's 8·d² per step gives a slope near 2;
   attention's n²·d term a slope near 1 while n ≫ d (its projections add 4·n·d², slope 2, as d nears n).
4. Sequential operations: time per token (time / n). The LSTM takes n dependent steps, so its time per
   token stays flat however parallel the hardware; attention's grows with n only once the hardware is full
   (on a GPU it stays flat for a long time; on a CPU or two it grows from the start).
5. Maximum path length: the norm of the gradient of the last output y_n with respect to the first input x_1,
   ‖∂(u·y_n)/∂x_1‖ for a fixed random unit vector u, in float64 at initialisation. Attention connects them in
   one step (non-zero for every n; it shrinks like the attention weight α_{n,1} ≈ 1/n of an untrained layer),
   the LSTM through n steps (decays exponentially with distance at initialisation).

Writes ``complexity.png``, ``complexity.md`` (Table 1 with the measured numbers alongside, and the raw
numbers) and ``complexity.json`` to ``--out``, and prints the Markdown.

    python bench/complexity.py --out bench/out/complexity              # CPU default: a few minutes
    python bench/complexity.py --device cuda --n-max-attention 16384 --n-max-lstm 8192 --threads 0
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from _common import synchronize
from qkv.nn import MultiHeadAttention

KINDS = ("attention", "attention-fused", "lstm")
LABELS = {
    "attention": "self-attention, explicit (need_weights=True)",
    "attention-fused": "self-attention, fused SDPA (need_weights=False)",
    "lstm": "recurrent: torch.nn.LSTM",
}


# -- one layer ---------------------------------------------------------------------------------------------
def make_layer(kind: str, d: int, heads: int, device: str, dtype: torch.dtype = torch.float32):
    """The layer and a function running it on x ``(B, n, d)`` -> ``(B, n, d)``."""
    if kind == "lstm":
        lstm = nn.LSTM(d, d, batch_first=True).to(device, dtype)
        return lstm, lambda x: lstm(x)[0]  # (B, n, d)
    mha = MultiHeadAttention(d, heads).to(device, dtype)
    need_weights = kind == "attention"
    return mha, lambda x: mha(x, x, x, need_weights=need_weights)[0]  # (B, n, d)


def saved_bytes(layer: nn.Module, run, x: Tensor) -> int:
    """Bytes of the activations autograd saves for the backward pass of ``run(x)``: each storage once, not
    counting the input or the layer's parameters (which exist anyway)."""
    exclude = {t.untyped_storage().data_ptr() for t in (x, *layer.parameters())}
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in exclude:
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run(x)
    del out
    return sum(storages.values())


class PeakMemory:
    """Peak memory of a block above what was allocated when it began.

    CUDA: ``torch.cuda.max_memory_allocated`` (exact tensor bytes). CPU, Linux: the process's peak
    resident set size ``VmHWM``, reset before the block by writing 5 to ``/proc/self/clear_refs``, minus
    ``VmRSS`` at the start (after ``gc.collect()`` and glibc's ``malloc_trim(0)`` hand freed memory back).
    It includes allocator slack, so small sizes sit at a noise floor of a few hundred KiB. Elsewhere: ``nan``.
    """

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.base = 0
        self.method = "torch.cuda.max_memory_allocated" if self.cuda else "VmHWM - VmRSS (Linux /proc)"
        try:
            self.libc = ctypes.CDLL("libc.so.6")
        except OSError:
            self.libc = None

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024  # kB
        raise OSError(f"{key} not in /proc/self/status")

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        try:
            if self.libc is not None:
                self.libc.malloc_trim(0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
            self.base = self._status("VmRSS")
        except OSError:
            self.base = -1
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = float(torch.cuda.max_memory_allocated() - self.base)
        else:
            self.peak = float("nan") if self.base < 0 else float(self._status("VmHWM") - self.base)


def timed(fn, device: str, repeats: int, min_seconds: float = 0.2) -> float:
    """Fastest of at least ``repeats`` runs (more, up to 50, until ``min_seconds`` have passed): on a shared
    machine the minimum is the least disturbed estimate of the work itself."""
    dev = torch.device(device)
    times: list[float] = []
    while len(times) < repeats or (sum(times) < min_seconds and len(times) < 50):
        synchronize(dev)
        t0 = time.perf_counter()
        fn()
        synchronize(dev)
        times.append(time.perf_counter() - t0)
    return min(times)


def measure_point(kind: str, n: int, d: int, heads: int, batch: int, device: str, repeats: int) -> dict:
    """Time (forward; forward + backward), peak memory and saved activations of one layer at length n."""
    torch.manual_seed(0)
    layer, run = make_layer(kind, d, heads, device)
    x = torch.randn(batch, n, d, device=device, requires_grad=True)  # (B, n, d)
    grad = torch.randn(batch, n, d, device=device)

    def fwd_bwd() -> None:
        run(x).backward(grad)
        x.grad = None
        layer.zero_grad(set_to_none=True)

    try:
        fwd_bwd()  # warm-up: kernels chosen, libraries initialised
        with PeakMemory(device) as memory:
            fwd_bwd()
        saved = saved_bytes(layer, run, x)
        with torch.no_grad():
            t_fwd = timed(lambda: run(x), device, repeats)
        t_fwd_bwd = timed(fwd_bwd, device, repeats)
    except torch.cuda.OutOfMemoryError as err:  # (a CPU run that runs out is killed by the OS instead)
        return dict(kind=kind, n=n, d=d, error=f"out of memory: {str(err).splitlines()[0]}")
    return dict(
        kind=kind,
        n=n,
        d=d,
        t_fwd=t_fwd,
        t_fwd_bwd=t_fwd_bwd,
        peak_bytes=memory.peak,
        saved_bytes=saved,
        peak_method=memory.method,
    )


# -- maximum path length -----------------------------------------------------------------------------------
def gradient_reach(kind: str, n: int, d: int, heads: int, seeds: int = 4) -> float:
    """‖∂(u·y_n)/∂x_1‖: how much the last output depends on the first input (float64, at initialisation),
    averaged over ``seeds`` draws of the layer, the input x ``(1, n, d)`` and the unit vector u."""
    norms = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        _, run = make_layer(kind, d, heads, "cpu", torch.float64)
        x = torch.randn(1, n, d, dtype=torch.float64, requires_grad=True)  # (1, n, d)
        u = torch.randn(d, dtype=torch.float64)
        (run(x)[0, -1] @ (u / u.norm())).backward()  # u·y_n
        norms.append(x.grad[0, 0].norm().item())  # ‖∂(u·y_n)/∂x_1‖
    return statistics.fmean(norms)


def show_norm(value: float) -> str:
    return "0 (float64 underflow)" if value == 0 else f"{value:.3g}"


# -- analysis ----------------------------------------------------------------------------------------------
def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y against log x."""
    lx, ly = [math.log(v) for v in xs], [math.log(v) for v in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    var = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / var if var else float("nan")


def fit(points: list[dict], x_key: str, y_key: str, last: int) -> tuple[float, str]:
    ok = [p for p in points if "error" not in p and p[y_key] > 0]
    ok = ok[-last:]
    if len(ok) < 2:
        return float("nan"), "-"
    return slope([p[x_key] for p in ok], [p[y_key] for p in ok]), f"{ok[0][x_key]}–{ok[-1][x_key]}"


def human_bytes(b: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(b) < 1024 or unit == "GiB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return f"{b:.1f} GiB"


def human_time(t: float) -> str:
    return f"{t * 1e6:.0f} µs" if t < 1e-3 else f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


PAPER_ROWS = {
    "attention": ("O(n²·d)", "O(1)", "O(1)"),
    "attention-fused": ("O(n²·d)", "O(1)", "O(1)"),
    "lstm": ("O(n·d²)", "O(n)", "O(n)"),
}


def markdown(results: dict) -> str:
    """The whole report: Table 1 with the measured exponents, then the three sweeps as tables."""
    a = results["args"]
    lines = [
        "# Table 1, measured",
        "",
        f"One layer, d = {a['d']}, {a['heads']} heads, batch {a['batch']}, float32, device `{a['device']}` "
        f"({results['machine']}), torch {results['torch']}, {a['threads'] or 'default'} thread(s). "
        f"Times are the fastest of ≥ {a['repeats']} runs; slopes are least-squares fits of log time vs "
        f"log n (or d) over the largest {a['fit_points']} points.",
        "",
        *table1_rows(results),
        "",
        f"Peak memory: {results['peak_method']}. Saved for backward: bytes of the tensors autograd keeps "
        "(exact, each storage once).",
        "",
        *n_sweep_rows(results),
        "",
        *d_sweep_rows(results),
        "",
        *path_rows(results),
    ]
    return "\n".join(lines) + "\n"


def table1_rows(results: dict) -> list[str]:
    """The paper's columns of Table 1 beside the measured slopes, per-token times and gradient reach."""
    a, sweep, dsweep, reach = results["args"], results["n_sweep"], results["d_sweep"], results["path"]
    lines = [
        "| Layer type | Complexity per layer (paper) | Sequential operations (paper) "
        "| Maximum path length (paper) "
        "| time ∝ n^k: k (fwd+bwd) | time ∝ d^k: k | peak memory ∝ n^k: k | saved for backward ∝ n^k: k "
        "| time per token, smallest → largest n | ‖∂y_n/∂x_1‖, smallest → largest n |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in KINDS:
        pts = [p for p in sweep if p["kind"] == kind]
        good = [p for p in pts if "error" not in p]
        k_n, _ = fit(pts, "n", "t_fwd_bwd", a["fit_points"])
        k_d, _ = fit([p for p in dsweep if p["kind"] == kind], "d", "t_fwd_bwd", a["fit_points"])
        k_m, _ = fit(pts, "n", "peak_bytes", a["fit_points"])
        k_s, _ = fit(pts, "n", "saved_bytes", a["fit_points"])
        per_token = (
            f"{human_time(good[0]['t_fwd_bwd'] / good[0]['n'])} → "
            f"{human_time(good[-1]['t_fwd_bwd'] / good[-1]['n'])}"
            if good
            else "-"
        )
        g = [r for r in reach if r["kind"] == kind]
        grad = (
            f"{show_norm(g[0]['grad_norm'])} (n={g[0]['n']}) → "
            f"{show_norm(g[-1]['grad_norm'])} (n={g[-1]['n']})"
            if g
            else "-"
        )
        lines.append(
            f"| {LABELS[kind]} | {' | '.join(PAPER_ROWS[kind])} | {k_n:.2f} | {k_d:.2f} | {k_m:.2f} | {k_s:.2f} "
            f"| {per_token} | {grad} |"
        )
    return lines


def n_sweep_rows(results: dict) -> list[str]:
    """Time, peak memory and saved-for-backward bytes per sequence length n."""
    sweep = results["n_sweep"]
    lines = [
        f"## Time and memory vs n (d = {results['args']['d']}, forward + backward)",
        "",
        "| n | " + " | ".join(f"{k}: time | {k}: peak | {k}: saved" for k in KINDS) + " |",
        "|---|" + "---|" * (3 * len(KINDS)),
    ]
    for n in sorted({p["n"] for p in sweep}):
        cells = []
        for kind in KINDS:
            p = next((p for p in sweep if p["kind"] == kind and p["n"] == n), None)
            if p is None:
                cells += ["–", "–", "–"]
            elif "error" in p:
                cells += ["failed", "–", "–"]
            else:
                cells += [human_time(p["t_fwd_bwd"]), human_bytes(p["peak_bytes"]), human_bytes(p["saved_bytes"])]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


def d_sweep_rows(results: dict) -> list[str]:
    """Time per model width d at a fixed n."""
    dsweep = results["d_sweep"]
    lines = [
        f"## Time vs d (n = {results['args']['d_sweep_n']}, forward + backward)",
        "",
        "| d | " + " | ".join(KINDS) + " |",
        "|---|" + "---|" * len(KINDS),
    ]
    for d in sorted({p["d"] for p in dsweep}):
        cells = []
        for kind in KINDS:
            p = next((p for p in dsweep if p["kind"] == kind and p["d"] == d), None)
            cells.append("–" if p is None or "error" in p else human_time(p["t_fwd_bwd"]))
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return lines


def path_rows(results: dict) -> list[str]:
    """How much of the first token reaches the last output: the gradient norm per n."""
    a, reach = results["args"], results["path"]
    lines = [
        f"## Maximum path length: ‖∂(u·y_n)/∂x_1‖ (d = {a['path_d']}, float64, untrained, mean of "
        f"{a.get('path_seeds', 1)} draws)",
        "",
        "| n | " + " | ".join(KINDS) + " |",
        "|---|" + "---|" * len(KINDS),
    ]
    for n in sorted({r["n"] for r in reach}):
        cells = [
            show_norm(next(r["grad_norm"] for r in reach if r["kind"] == k and r["n"] == n)) for k in KINDS
        ]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, axes = plt.subplots(2, 3, figsize=(16, 9.5))
    sweep, dsweep, reach = results["n_sweep"], results["d_sweep"], results["path"]
    colours = {"attention": "C0", "attention-fused": "C2", "lstm": "C3"}

    def series(points, kind, x, y, scale=1.0):
        pts = [p for p in points if p["kind"] == kind and "error" not in p and p.get(y, 1) > 0]
        return [p[x] for p in pts], [p[y] * scale for p in pts]

    panels = [
        (axes[0, 0], "t_fwd_bwd", "time of forward + backward (s)", "n"),
        (axes[0, 1], "peak_bytes", "peak memory of forward + backward (MiB)", "n"),
        (axes[0, 2], "saved_bytes", "bytes saved for backward (MiB)", "n"),
    ]
    for ax, key, title, xlabel in panels:
        scale = 1 / 2**20 if "bytes" in key else 1.0
        for kind in KINDS:
            xs, ys = series(sweep, kind, "n", key, scale)
            ax.plot(xs, ys, "o-", color=colours[kind], label=kind)
        ax.set(xscale="log", yscale="log", title=title, xlabel=xlabel)
    ax = axes[1, 0]
    for kind in KINDS:
        pts = [p for p in sweep if p["kind"] == kind and "error" not in p]
        ax.plot(
            [p["n"] for p in pts],
            [p["t_fwd_bwd"] / p["n"] * 1e6 for p in pts],
            "o-",
            color=colours[kind],
            label=kind,
        )
    ax.set(xscale="log", yscale="log", title="sequential operations: time per token (µs)", xlabel="n")
    ax = axes[1, 1]
    for kind in KINDS:
        xs, ys = series(dsweep, kind, "d", "t_fwd_bwd")
        ax.plot(xs, ys, "o-", color=colours[kind], label=kind)
    ax.set(
        xscale="log", yscale="log", title=f"time vs d at n = {results['args']['d_sweep_n']} (s)", xlabel="d"
    )
    ax = axes[1, 2]
    for kind in KINDS:
        pts = [r for r in reach if r["kind"] == kind and r["grad_norm"] > 0]  # 0: below float64's range
        ax.plot(
            [r["n"] for r in pts],
            [r["grad_norm"] for r in pts],
            "o-",
            color=colours[kind],
            label=kind,
        )
    att = [r for r in reach if r["kind"] == "attention"]
    if att:
        ref = [att[0]["grad_norm"] * att[0]["n"] / r["n"] for r in att]
        ax.plot([r["n"] for r in att], ref, "k:", label="∝ 1/n (α_n1 of an untrained layer)")
    ax.set(xscale="log", yscale="log", title="maximum path length: ‖∂y_n/∂x_1‖", xlabel="distance n")
    for ax in axes.flat:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Table 1 of 'Attention Is All You Need', measured — d = {results['args']['d']}, "
        f"{results['args']['device']}, {results['machine']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cpu_name() -> str:
    """The CPU's model name and core count (Linux /proc/cpuinfo; platform's guess elsewhere)."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def powers_of_two(lo: int, hi: int) -> list[int]:
    out, n = [], lo
    while n <= hi:
        out.append(n)
        n *= 2
    return out


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("bench/out/complexity"), help="output folder")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    p.add_argument("--d", type=int, default=256, help="model width d for the n sweep (256)")
    p.add_argument("--heads", type=int, default=4, help="attention heads (4)")
    p.add_argument("--batch", type=int, default=1, help="batch size (1)")
    p.add_argument("--n-min", type=int, default=16)
    p.add_argument(
        "--n-max-attention", type=int, default=None, help="largest n for attention (CPU 4096, CUDA 16384)"
    )
    p.add_argument(
        "--n-max-lstm", type=int, default=None, help="largest n for the LSTM (CPU 2048, CUDA 8192)"
    )
    p.add_argument(
        "--d-sweep", type=int_list, default=[32, 64, 128, 256, 512, 1024], help="widths for the d sweep"
    )
    p.add_argument("--d-sweep-n", type=int, default=512, help="sequence length of the d sweep (512)")
    p.add_argument("--path-n", type=int_list, default=[2, 4, 8, 16, 32, 64, 128, 256, 512, 1024])
    p.add_argument("--path-seeds", type=int, default=4, help="draws averaged per gradient-reach point (4)")
    p.add_argument("--path-d", type=int, default=64, help="width of the gradient-reach layers (64)")
    p.add_argument("--repeats", type=int, default=3, help="least timed runs per point; the fastest is kept")
    p.add_argument("--fit-points", type=int, default=4, help="fit slopes over this many largest points (4)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1; 0 = torch's default)")
    p.add_argument(
        "--from-json", type=Path, help="re-draw the table and plot from a complexity.json; no timing"
    )
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda but torch.cuda.is_available() is False")
    on_gpu = args.device.startswith("cuda")
    args.n_max_attention = args.n_max_attention or (16384 if on_gpu else 4096)
    args.n_max_lstm = args.n_max_lstm or (8192 if on_gpu else 2048)
    if args.d % args.heads:
        p.error(f"--d ({args.d}) must be divisible by --heads ({args.heads})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        results = json.loads(args.from_json.read_text())
        return write_outputs(results, args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu_name()
    start = time.perf_counter()
    sweep = []
    for kind in KINDS:
        cap = args.n_max_lstm if kind == "lstm" else args.n_max_attention
        for n in powers_of_two(args.n_min, cap):
            point = measure_point(kind, n, args.d, args.heads, args.batch, args.device, args.repeats)
            sweep.append(point)
            shown = (
                point.get("error")
                or f"{human_time(point['t_fwd_bwd'])}, peak {human_bytes(point['peak_bytes'])}"
            )
            print(f"  n-sweep {kind:16s} n={n:6d}: {shown}", file=sys.stderr, flush=True)
    dsweep = []
    for kind in KINDS:
        for d in args.d_sweep:
            heads = args.heads if d % args.heads == 0 else 1
            dsweep.append(
                measure_point(kind, args.d_sweep_n, d, heads, args.batch, args.device, args.repeats)
            )
            shown = dsweep[-1].get("error") or human_time(dsweep[-1]["t_fwd_bwd"])
            print(f"  d-sweep {kind:16s} d={d:5d}: {shown}", file=sys.stderr, flush=True)
    path = [
        dict(
            kind=k,
            n=n,
            grad_norm=gradient_reach(k, n, args.path_d, min(args.heads, args.path_d), args.path_seeds),
        )
        for k in KINDS
        for n in args.path_n
    ]
    results = dict(
        args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        machine=machine,
        torch=torch.__version__,
        seconds=time.perf_counter() - start,
        peak_method=(
            "torch.cuda.max_memory_allocated above the allocation before the pass (exact tensor bytes)"
            if args.device.startswith("cuda")
            else "rise of the process's peak resident set size over the pass (Linux: VmHWM reset through "
            "/proc/self/clear_refs, minus VmRSS before; includes allocator slack, so the smallest n sit at a "
            "noise floor)"
        ),
        n_sweep=sweep,
        d_sweep=dsweep,
        path=path,
    )
    return write_outputs(results, args.out)


def write_outputs(results: dict, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    (out / "complexity.json").write_text(json.dumps(results, indent=1))
    text = markdown(results)
    (out / "complexity.md").write_text(text)
    plot(results, out / "complexity.png")
    print(text)
    print(
        f"wrote {out}/complexity.{{md,png,json}}; measuring took {results['seconds']:.0f} s", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
