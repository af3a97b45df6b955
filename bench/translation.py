"""Quality bars of issue 3 on Multi30k test_2016_flickr: train with a time budget, then score with beam 5.

Runs ``qkv train`` with the recipe of a setting and prints sacreBLEU (cased, 13a), chrF and lowercased BLEU for
the best and the averaged checkpoints, with the wall time. Settings:

- ``cpu-de-en``: 2 CPU cores, ≤ 30 minutes of training, De→En. Bar: ≥ 28 sacreBLEU cased.
- ``gpu-de-en``: one GPU (H100), ≤ 10 minutes, De→En. Bars: ≥ 40 lowercased BLEU and ≥ 38 sacreBLEU cased.
- ``gpu-en-de``: one GPU, ≤ 10 minutes, En→De. Bar: ≥ 42 lowercased BLEU.
- ``rnn`` / ``rnn-attention`` / ``transformer-same-budget``: the three architectures of issue 5 at one budget.

Usage:
    python bench/translation.py cpu-de-en [--data ../shared/data/multi30k] [--out runs/bench-cpu-de-en]
    python bench/translation.py gpu-de-en --minutes 10
    python bench/translation.py cpu-de-en --dry-run      # print the qkv train command only
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (src, tgt, minutes, qkv train arguments, bars {metric: minimum})
SETTINGS: dict[str, tuple[str, str, float, list[str], dict[str, float]]] = {
    "cpu-de-en": (
        "de", "en", 30,
        ["--preset", "small", "--set", "dropout=0.1", "--vocab-size", "8000", "--max-tokens", "3072",
         "--lr-schedule", "inverse_sqrt", "--lr", "1e-3", "--warmup", "500", "--no-bleu", "--save-every", "150",
         "--log-every", "50"],
        {"bleu": 28.0},
    ),
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
    "rnn": ("de", "en", 30, ["--arch", "rnn", "--preset", "small", "--max-tokens", "3072", "--lr", "1e-3",
                             "--no-bleu", "--save-every", "150"], {}),
    "rnn-attention": ("de", "en", 30, ["--arch", "rnn-attention", "--preset", "small", "--max-tokens", "3072",
                                       "--lr", "1e-3", "--no-bleu", "--save-every", "150"], {}),
}
SETTINGS["transformer-same-budget"] = (*SETTINGS["cpu-de-en"][:4], {})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("setting", choices=sorted(SETTINGS))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "multi30k"))
    parser.add_argument("--out", default=None, help="run folder (default runs/bench-SETTING)")
    parser.add_argument("--minutes", type=float, default=None, help="override the training budget")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dry-run", action="store_true", help="print the command and exit")
    args = parser.parse_args()

    src, tgt, minutes, recipe, bars = SETTINGS[args.setting]
    out = Path(args.out or f"runs/bench-{args.setting}")
    argv = ["train", "--data", args.data, "--src", src, "--tgt", tgt, "--out", str(out),
            "--max-minutes", str(args.minutes or minutes), "--device", args.device, "--no-progress", *recipe]
    print("qkv " + shlex.join(argv), flush=True)
    if args.dry_run:
        return 0

    from qkv.cli import main as qkv_main

    t0 = time.time()
    code = qkv_main(argv)
    if code != 0:
        return code
    results = json.loads((out / "results.json").read_text())
    print(f"\n{args.setting}: {(time.time() - t0) / 60:.1f} min in all "
          f"({results['train']['elapsed_seconds'] / 60:.1f} min of training, {results['train']['steps']} steps)")
    failed = False
    for name, scores in results.get("test", {}).items():
        line = (f"  {name:>9}: sacreBLEU {scores['bleu']:.1f}  lowercased BLEU {scores['bleu_lowercase']:.1f}  "
                f"chrF {scores['chrf']:.1f}  (beam {scores['beam']})")
        print(line)
    best = max(results.get("test", {}).values(), key=lambda s: s["bleu"], default=None)
    for metric, minimum in bars.items():
        value = best[metric] if best else float("nan")
        ok = value >= minimum
        failed |= not ok
        print(f"  bar {metric} >= {minimum}: {value:.1f} {'PASS' if ok else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
