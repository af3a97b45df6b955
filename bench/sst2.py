"""Reproduce the SST-2 quality bar (>= 82% dev accuracy from scratch) and the gain of MLM pre-training.

    python bench/sst2.py [--data ../shared/data/sst2] [--out runs/bench-sst2] [--epochs 3]
                         [--pretrain-epochs 2] [--skip-scratch] [--skip-pretrain] [--threads 1]

Runs `qkv classify train` from scratch, then `qkv classify pretrain` + `qkv classify train --init`, and prints
dev accuracy and wall time of each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from qkv.cli import main
from qkv.train.checkpoint import read_config

ROOT = Path(__file__).resolve().parents[1]


def dev_acc(folder: Path) -> float:
    return read_config(folder)["metrics"]["dev_acc"]


def classify(action: str, data: str, out: Path, epochs: int, *options: str) -> bool:
    """Run ``qkv classify ACTION``; True when it succeeded."""
    return main(["classify", action, "--data", data, "--out", str(out), "--epochs", str(epochs), *options]) == 0


def run() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sst2"))
    p.add_argument("--out", default="runs/bench-sst2")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--pretrain-epochs", type=int, default=2)
    p.add_argument("--skip-scratch", action="store_true")
    p.add_argument("--skip-pretrain", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args, extra = p.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    results = {}
    if not args.skip_scratch:
        start = time.perf_counter()
        if not classify("train", args.data, out / "scratch", args.epochs, *extra):
            return 1
        results["scratch"] = (dev_acc(out / "scratch"), time.perf_counter() - start)
    if not args.skip_pretrain:
        start = time.perf_counter()
        if not classify("pretrain", args.data, out / "mlm", args.pretrain_epochs, *extra):
            return 1
        if not classify("train", args.data, out / "finetuned", args.epochs, "--init", str(out / "mlm")):
            return 1
        results["mlm+finetune"] = (dev_acc(out / "finetuned"), time.perf_counter() - start)
    for name, (acc, wall) in results.items():
        bar = f" (bar 0.82: {'PASS' if acc >= 0.82 else 'FAIL'})" if name == "scratch" else ""
        print(f"bench/sst2: {name}: dev accuracy {100 * acc:.3f} %{bar}, wall {wall:.0f}s")
    if len(results) == 2:
        gain = results["mlm+finetune"][0] - results["scratch"][0]
        print(f"bench/sst2: gain of MLM pre-training: {100 * gain:+.3f} points")
    print(f"torch threads {torch.get_num_threads()}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
