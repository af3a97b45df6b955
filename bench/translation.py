"""Quality bars of issue 3 on Multi30k test_2016_flickr: train with a time budget, then score with beam 5.

Runs ``qkv train`` with the recipe of a setting and prints sacreBLEU (cased, 13a), chrF and lowercased BLEU for
the best and the averaged checkpoints, with the wall time. Settings:

- ``cpu-de-en``: 2 CPU cores, ≤ 30 minutes of training, De→En. Bar: ≥ 40 sacreBLEU cased (issue 17; issue
  3's bar was ≥ 28).
- ``cpu-en-de``: the same recipe En→De. Bar: ≥ 38 sacreBLEU cased (issue 17).
- ``gpu-de-en``: one GPU (H100), ≤ 10 minutes, De→En. Bars: ≥ 40 lowercased BLEU and ≥ 38 sacreBLEU cased.
- ``gpu-en-de``: one GPU, ≤ 10 minutes, En→De. Bar: ≥ 42 lowercased BLEU.
- ``rnn`` / ``rnn-attention`` / ``transformer``: the three architectures of issue 5 at one budget (8 minutes
  on 2 CPU cores by default); give several settings to get one table.

Usage:
    python bench/translation.py cpu-de-en [--data ../shared/data/multi30k] [--out runs/bench-cpu-de-en]
    python bench/translation.py gpu-de-en --minutes 10
    python bench/translation.py rnn rnn-attention transformer --minutes 8    # the comparison table
    python bench/translation.py cpu-de-en --dry-run      # print the qkv train command only
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The small preset on 2 CPU cores (issue 3): the paper's Adam, label smoothing and post-LN, a shorter warm-up.
CPU_RECIPE = [
    "--preset", "small", "--vocab-size", "8000", "--max-tokens", "3072",
    "--lr-schedule", "inverse_sqrt", "--lr", "1e-3", "--warmup", "500", "--no-bleu", "--save-every", "150",
    "--log-every", "50",
]
# Issue 17: bf16 autocast where the CPU has it (more steps in the same minutes), and the length penalty tuned
# on val (α 0.6 -> 1.4: 31.96 -> 33.34 BLEU on Multi30k val with a 1,100-step De→En checkpoint of CPU_RECIPE;
# α = 0.6 left the output too short, brevity penalty 0.91). Test was not looked at to choose it. Session 8: the
# flagged init="normal" (N(0, 0.02), the Marian / BERT choice): validation loss 3.43 vs 3.76 after 656 steps.
# Session 16: dropout 0.3 (the paper's P_drop for its big model; the small preset's 0.1 overfits the 29,000
# pairs after ~11 epochs once a CPU runs 3,000+ steps in 30 minutes): val BLEU, averaged checkpoint, α 1.4,
# De→En 39.41 (0.1) -> 40.00 (0.2) -> 41.02 (0.3), En→De 36.53 (0.1) -> 38.68 (0.3); one run each, test not
# looked at to choose.
CPU_FAST = ["--set", "dropout=0.3", "--precision", "auto", "--test-alpha", "1.4", "--set", "init=normal"]

# name -> (src, tgt, minutes, qkv train arguments, bars {metric: minimum})
SETTINGS: dict[str, tuple[str, str, float, list[str], dict[str, float]]] = {
    "cpu-de-en": ("de", "en", 30, [*CPU_RECIPE, *CPU_FAST], {"bleu": 40.0}),
    "cpu-en-de": ("en", "de", 30, [*CPU_RECIPE, *CPU_FAST], {"bleu": 38.0}),
    "gpu-de-en": (
        "de", "en", 10,
        ["--preset", "base", "--set", "dropout=0.3", "--vocab-size", "10000", "--max-tokens", "16384",
         "--bf16", "--compile", "--lr-schedule", "inverse_sqrt", "--lr", "1e-3", "--warmup", "800",
         "--save-every", "200"],
        {"bleu": 38.0, "bleu_lowercase": 40.0},
    ),
    "gpu-en-de": (
        "en", "de", 10,
        ["--preset", "base", "--set", "dropout=0.3", "--vocab-size", "10000", "--max-tokens", "16384",
         "--bf16", "--compile", "--lr-schedule", "inverse_sqrt", "--lr", "1e-3", "--warmup", "800",
         "--save-every", "200"],
        {"bleu_lowercase": 42.0},
    ),
    # issue 5: the three architectures with the same data, tokenizer, batching, budget, decoding and scoring
    **{
        arch: ("de", "en", 8, ["--arch", arch, "--preset", "small", "--max-tokens", "3072", "--lr-schedule",
                               "inverse_sqrt", "--lr", "1e-3", "--warmup", "500", "--no-bleu", "--average-last", "1",
                               "--log-every", "50"], {})
        for arch in ("rnn", "rnn-attention")
    },
}
SETTINGS["transformer"] = (  # issue 5's fp32 table: 8 minutes do not overfit, the small preset's dropout 0.1
    "de", "en", 8, [*CPU_RECIPE, "--set", "dropout=0.1", "--average-last", "1"], {}
)


def run_setting(name: str, args: argparse.Namespace) -> dict | None:
    """Train and score one setting; returns its results.json (with the setting's bars checked)."""
    src, tgt, minutes, recipe, bars = SETTINGS[name]
    out = Path(args.out or "runs") / f"bench-{name}"
    argv = ["train", "--data", args.data, "--src", src, "--tgt", tgt, "--out", str(out),
            "--max-minutes", str(args.minutes or minutes), "--device", args.device, "--no-progress", *recipe]
    print("qkv " + shlex.join(argv), flush=True)
    if args.dry_run:
        return None

    from qkv.cli import main as qkv_main

    t0 = time.time()
    if qkv_main(argv) != 0:
        raise SystemExit(f"{name}: qkv train failed")
    results = json.loads((out / "results.json").read_text())
    config = json.loads((out / "best" / "config.json").read_text())
    results["name"], results["arch"] = name, config["arch"]
    results["parameters"] = parameter_count(out / "best")
    print(f"\n{name}: {(time.time() - t0) / 60:.1f} min in all "
          f"({results['train']['elapsed_seconds'] / 60:.1f} min of training, {results['train']['steps']} steps)")
    for ckpt, scores in results.get("test", {}).items():
        print(f"  {ckpt:>9}: sacreBLEU {scores['bleu']:.1f}  lowercased BLEU {scores['bleu_lowercase']:.1f}  "
              f"chrF {scores['chrf']:.1f}  (beam {scores['beam']})")
    best = max(results.get("test", {}).values(), key=lambda s: s["bleu"], default=None)
    results["passed"] = True
    for metric, minimum in bars.items():
        value = best[metric] if best else float("nan")
        results["passed"] &= value >= minimum
        print(f"  bar {metric} >= {minimum}: {value:.1f} {'PASS' if value >= minimum else 'FAIL'}")
    results["best_scores"] = best
    return results


def parameter_count(folder: Path) -> int:
    """Parameters stored in a checkpoint (tied matrices are stored, and counted, once)."""
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118 (not a dict)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="+", choices=sorted(SETTINGS), metavar="SETTING",
                        help=f"one or more of {', '.join(sorted(SETTINGS))}")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "multi30k"))
    parser.add_argument("--out", default=None, help="parent folder of the runs (default runs/): OUT/bench-SETTING")
    parser.add_argument("--minutes", type=float, default=None, help="override the training budget")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    args = parser.parse_args()

    rows = [r for r in (run_setting(name, args) for name in args.settings) if r is not None]
    if len(rows) > 1:
        print("\n| model | parameters | training | steps | sacreBLEU | lowercased BLEU | chrF |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            s = r["best_scores"]
            print(f"| {r['name']} | {r['parameters']:,} | {r['train']['elapsed_seconds'] / 60:.1f} min | "
                  f"{r['train']['steps']} | {s['bleu']:.1f} | {s['bleu_lowercase']:.1f} | {s['chrf']:.1f} |")
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
