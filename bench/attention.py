"""Benchmark qkv's attention against raw ``torch.nn.functional.scaled_dot_product_attention``.

Three implementations of Eq. 1, same inputs ``q, k, v`` of shape ``(B, H, T, Dh)``:

- ``sdpa``:          ``F.scaled_dot_product_attention`` called directly (the reference);
- ``qkv fused``:     ``qkv.scaled_dot_product_attention(..., need_weights=False)`` (the path training uses);
- ``qkv explicit``:  ``need_weights=True``, the step-by-step softmax(Q Kᵀ/√d_k) V that returns the weights.

For each head dimension, causal or not, and length T it prints the time and TFLOP/s of the forward and the
forward+backward, and the overhead of ``qkv fused`` over ``sdpa`` (bar on a GPU: ≤ 5 %).

FLOPs: the forward is two matmuls, 4·B·H·T²·Dh (half of it when causal: the masked half need not be
computed, the FlashAttention convention); the backward is 2.5× the forward (five matmuls instead of two).
The total width H·Dh and the number of tokens B·T are held fixed, as in the FlashAttention benchmarks.

Examples:
    python bench/attention.py                                  # CPU defaults: small T, quick
    python bench/attention.py --device cuda --dtype bf16       # GPU defaults: T = 512 … 8192
    python bench/attention.py --seq-lens 1024 2048 --head-dims 64 --mask padding
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

import qkv
from _common import Timing, add_device_options, compare, environment, format_table, setup_device
from qkv.nn.masks import padding_mask


def attention_flops(b: int, h: int, t: int, d_head: int, causal: bool, backward: bool) -> float:
    """Matmul FLOPs of attention over ``(B, H, T, Dh)``: 4·B·H·T²·Dh forward, ×3.5 with the backward."""
    flops = 4 * b * h * t * t * d_head
    if causal:
        flops /= 2
    return flops * (3.5 if backward else 1.0)


def make_fns(q, k, v, causal: bool, mask: torch.Tensor | None, backward: bool):
    """The three implementations as zero-argument callables (forward, or forward + backward).

    ``mask`` is a key-padding mask or None; raw SDPA gets it combined with the causal mask when ``causal``
    (SDPA refuses ``attn_mask`` together with ``is_causal``), qkv gets it as is with ``is_causal=True``.
    """
    t_q, t_k = q.shape[-2], k.shape[-2]

    def sdpa():
        if mask is not None and causal:  # what a caller of raw SDPA has to do: build the combined mask
            both = mask & torch.ones(t_q, t_k, dtype=torch.bool, device=q.device).tril()  # (B, 1, T, T)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=both)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)

    def qkv_fused():
        return qkv.scaled_dot_product_attention(q, k, v, mask, is_causal=causal, need_weights=False)[0]

    def qkv_explicit():
        return qkv.scaled_dot_product_attention(q, k, v, mask, is_causal=causal, need_weights=True)[0]

    fns = {"sdpa": sdpa, "qkv fused": qkv_fused, "qkv explicit": qkv_explicit}
    if not backward:
        return fns
    grad = torch.randn_like(q)

    def with_backward(fn):
        def run():
            out = fn()
            # autograd.grad, not .backward(): no gradient accumulation kernel inside the timed region
            return torch.autograd.grad(out, (q, k, v), grad)

        return run

    return {name: with_backward(fn) for name, fn in fns.items()}


def run_case(args, device, dtype, d_head: int, t: int, causal: bool, backward: bool) -> dict[str, object]:
    h = max(1, args.width // d_head)
    b = max(1, args.tokens // t)
    gen = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (
        torch.randn(b, h, t, d_head, generator=gen).to(device=device, dtype=dtype).requires_grad_(backward)
        for _ in range(3)
    )  # (B, H, T, Dh)
    mask = None
    if args.mask == "padding":
        # every sequence loses its last quarter to padding: a (B, 1, 1, T) key-padding mask
        tokens = torch.ones(b, t, dtype=torch.long, device=device)
        tokens[:, t - t // 4 :] = 0
        mask = padding_mask(tokens, pad_id=0)  # (B, 1, 1, T)
    fns = make_fns(q, k, v, causal, mask, backward)
    flops = attention_flops(b, h, t, d_head, causal, backward)
    row: dict[str, object] = {
        "Dh": d_head, "causal": "yes" if causal else "no", "pass": "fwd+bwd" if backward else "fwd",
        "B×H×T": f"{b}×{h}×{t}",
    }
    if t > args.explicit_max_len:
        del fns["qkv explicit"]
    try:
        timings: dict[str, Timing | None] = compare(fns, device, warmup=args.warmup, iters=args.iters)
    except torch.cuda.OutOfMemoryError:  # the explicit path materialises B·H·T² weights
        if device.type == "cuda":
            torch.cuda.empty_cache()
        fns.pop("qkv explicit", None)
        timings = compare(fns, device, warmup=args.warmup, iters=args.iters)
    timings.setdefault("qkv explicit", None)
    for name, timing in timings.items():
        if timing is None:
            row[f"{name} ms"] = row[f"{name} TF/s"] = "-"
        else:
            row[f"{name} ms"] = f"{timing.median * 1e3:.3f}"
            row[f"{name} TF/s"] = f"{flops / timing.median / 1e12:.3f}"
    ref, ours = timings["sdpa"], timings["qkv fused"]
    if ref is not None and ours is not None:
        row["fused overhead"] = f"{(ours.median / ref.median - 1) * 100:+.1f}%"
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_device_options(parser, dtype_help="default: bf16 on CUDA, fp32 elsewhere")
    parser.add_argument("--seq-lens", type=int, nargs="+", help="default 512…8192 (CUDA), 128…512 (CPU)")
    parser.add_argument("--head-dims", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--tokens", type=int, help="B·T held fixed (default: 16384 on CUDA, 2048 on CPU)")
    parser.add_argument("--width", type=int, help="H·Dh held fixed (default: 2048 on CUDA, 256 on CPU)")
    parser.add_argument("--causal", choices=["both", "yes", "no"], default="both")
    parser.add_argument("--passes", choices=["both", "fwd", "fwd+bwd"], default="both")
    parser.add_argument("--mask", choices=["none", "padding"], default="none",
                        help="padding: give every implementation a key-padding mask (last quarter padded)")
    parser.add_argument("--explicit-max-len", type=int, help="skip the explicit path above this T "
                        "(it materialises B·H·T² weights; default 4096 on CUDA, no limit on CPU)")
    parser.add_argument("--warmup", type=int, help="untimed calls (default: 5 on CUDA, 2 on CPU)")
    parser.add_argument("--iters", type=int, help="timed iterations (default: 30 on CUDA, 10 on CPU)")
    args = parser.parse_args(argv)

    device, dtype = setup_device(args)
    gpu = device.type == "cuda"
    args.seq_lens = args.seq_lens or ([512, 1024, 2048, 4096, 8192] if gpu else [128, 256, 512])
    args.tokens = args.tokens or (16384 if gpu else 2048)
    args.width = args.width or (2048 if gpu else 256)
    args.explicit_max_len = args.explicit_max_len or (4096 if gpu else 1 << 30)
    args.iters = args.iters or (30 if gpu else 10)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 2)
    causals = {"both": [False, True], "yes": [True], "no": [False]}[args.causal]
    passes = {"both": [False, True], "fwd": [False], "fwd+bwd": [True]}[args.passes]

    print(environment())
    print(f"device {device}, dtype {dtype}, B·T = {args.tokens}, H·Dh = {args.width}, mask {args.mask}, "
          f"median of {args.iters} iterations")
    rows = []
    for d_head in args.head_dims:
        for causal in causals:
            for backward in passes:
                for t in args.seq_lens:
                    rows.append(run_case(args, device, dtype, d_head, t, causal, backward))
                    print(f"  done Dh={d_head} causal={causal} backward={backward} T={t}", file=sys.stderr)
    columns = ["Dh", "causal", "pass", "B×H×T"]
    for name in ("sdpa", "qkv fused", "qkv explicit"):
        columns += [f"{name} ms", f"{name} TF/s"]
    columns.append("fused overhead")
    print(format_table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
