"""Reproduce the ViT quality bar: MNIST t10k (first 8,000 train, last 2,000 test), >= 96% test accuracy.

    python bench/vit.py [--data ../shared/data/mnist] [--out runs/bench-vit] [--threads 1] [-- extra `qkv vit
    train` options]

Prints the per-epoch log, the final test accuracy and the wall time, and draws one attention rollout.
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


def run() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    p.add_argument("--out", default="runs/bench-vit")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args, extra = p.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    code = main(["vit", "train", "--data", args.data, "--out", args.out, *extra])
    if code:
        return code
    wall = time.perf_counter() - start
    metrics = read_config(args.out)["metrics"]
    main(["vit", "attention", "--model", args.out, "--index", "0"])
    bar = "PASS" if metrics["test_acc"] >= 0.96 else "FAIL"
    print(
        f"bench/vit: MNIST t10k test accuracy {metrics['test_acc']:.4f} (bar 0.96: {bar}), wall {wall:.0f}s, "
        f"torch threads {torch.get_num_threads()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run())
