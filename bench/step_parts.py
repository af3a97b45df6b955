"""Two parts of a training step that are not matrix products, qkv's against PyTorch's (issue 17).

- **dropout**: ``qkv.nn.dropout.dropout`` (16-bit CPU mask) against ``torch.nn.functional.dropout``, forward +
  backward of one residual-stream activation ``(B, T, D)``;
- **loss**: ``qkv.train.label_smoothed_cross_entropy`` (one chunked pass for the loss and its gradient)
  against ``F.cross_entropy(label_smoothing=ε)`` on float32 logits (what the other implementations of
  ``bench/train_throughput.py`` run), forward + backward of ``(B·T, V)`` logits.

Each pair is timed round-robin in one process (a change of load on a shared machine hits both alike); the
table gives the median milliseconds and PyTorch's time over qkv's.

Examples:
    python bench/step_parts.py --threads 1                       # issue 17's shapes: 48 × 32, D 256, V 8000
    python bench/step_parts.py --threads 2 --dtype fp32 --iters 50
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from _common import compare, environment, format_table
from qkv.nn.dropout import dropout
from qkv.train.loss import label_smoothed_cross_entropy

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def dropout_pair(b: int, t: int, d: int, p: float, dtype: torch.dtype):
    x0 = torch.randn(b, t, d).to(dtype)  # (B, T, D)

    def step(drop):
        def run() -> None:
            x = x0.clone().requires_grad_()
            drop(x).backward(x0)

        return run

    return {"torch": step(lambda x: F.dropout(x, p, training=True)), "qkv": step(lambda x: dropout(x, p))}


def loss_pair(b: int, t: int, v: int, epsilon: float, dtype: torch.dtype):
    logits0 = (3 * torch.randn(b * t, v)).to(dtype)  # (N, V)
    target = torch.randint(1, v, (b * t,))  # (N,)
    target[::7] = 0  # some padding (id 0, ignored)

    def torch_loss() -> None:
        logits = logits0.clone().requires_grad_()
        loss = F.cross_entropy(logits.float(), target, ignore_index=0, label_smoothing=epsilon, reduction="sum")
        loss.backward()

    def qkv_loss() -> None:
        logits = logits0.clone().requires_grad_()
        loss, _, _ = label_smoothed_cross_entropy(logits, target, epsilon, ignore_index=0)
        loss.backward()

    return {"torch": torch_loss, "qkv": qkv_loss}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16", help="activation / logits dtype")
    p.add_argument("--batch", type=int, default=48)
    p.add_argument("--len", type=int, default=32, help="target length T")
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--iters", type=int, default=30)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype, cpu = DTYPES[args.dtype], torch.device("cpu")
    print(environment())
    print(f"{args.threads} thread(s), {args.dtype}, B {args.batch}, T {args.len}, D {args.d_model}, V {args.vocab}")
    rows = []
    for part, fns in (
        (f"dropout p=0.1 ({args.batch}, {args.len}, {args.d_model})",
         dropout_pair(args.batch, args.len, args.d_model, 0.1, dtype)),
        (f"loss ε=0.1 ({args.batch * args.len}, {args.vocab})",
         loss_pair(args.batch, args.len, args.vocab, 0.1, dtype)),
    ):  # fmt: skip
        timings = compare(fns, cpu, warmup=3, iters=args.iters)
        ms = {name: timing.median * 1e3 for name, timing in timings.items()}
        rows.append({"part (forward + backward)": part, "torch ms": f"{ms['torch']:.2f}", "qkv ms": f"{ms['qkv']:.2f}",
                     "torch / qkv": f"{ms['torch'] / ms['qkv']:.2f}×"})  # fmt: skip
    print(format_table(rows, list(rows[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
