"""Issue 16: local vs global, hard vs soft attention and one- vs two-way RNN encoders, at one step budget.

Every variant trains on Multi30k De→En with the recipe of ``bench/translation.py`` (``cpu-de-en`` for the
Transformer, the ``rnn`` / ``rnn-attention`` recipe for the baselines) for the SAME NUMBER OF STEPS (not
minutes: the machine is shared), then its best checkpoint (by validation loss) is scored on
test_2016_flickr with beam 5 (sacreBLEU, cased, 13a). The table gives BLEU and the training wall time.

``--checkpoint FOLDER`` instead scores one trained Transformer with its weights unchanged and every head
switched to each ``--inference`` mode at load (``attention=soft|hard``, and ``window=N`` for a band at
inference only), to see how much the model relies on soft mixing.

A finished variant (its ``results.json`` exists) is not trained again: rerun the same command to continue.
The windowed variants also get their attention maps drawn by ``qkv attention`` under ``OUT/VARIANT/attention``.

Usage:
    python bench/variants.py global window2 window4 window8 hard --steps 600 --out /work/runs/notes16
    python bench/variants.py lstm lstm-bi gru-att gru-att-oneway --steps 600 --out /work/runs/notes16
    python bench/variants.py --checkpoint /work/runs/bench-cpu-de-en/averaged --inference soft hard
    python bench/variants.py global --steps 600 --dry-run     # print the qkv train commands only
"""

from __future__ import annotations

import argparse
import gzip
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from _common import environment
from translation import ROOT, SETTINGS

# name -> (recipe of bench/translation.py, extra qkv train arguments)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "global": ("cpu-de-en", []),
    **{f"window{w}": ("cpu-de-en", ["--set", f"attention_window={w}"]) for w in (1, 2, 4, 8, 16)},
    "hard": ("cpu-de-en", ["--set", "attention=hard"]),
    "lstm": ("rnn", []),
    "lstm-bi": ("rnn", ["--set", "bidirectional=True"]),
    "gru-att": ("rnn-attention", []),
    "gru-att-oneway": ("rnn-attention", ["--set", "bidirectional=False"]),
}
DROP = {"--save-every", "--average-last"}  # replaced: one checkpoint every 100 steps, no averaging


def recipe(name: str) -> list[str]:
    base, extra = VARIANTS[name]
    args, out, skip = SETTINGS[base][3], [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in DROP:
            skip = True
            continue
        out.append(a)
    return [*out, "--save-every", "100", "--average-last", "1", "--test-beam", "5", *extra]


def read_test(data: str, src: str = "de", tgt: str = "en") -> tuple[list[str], list[str]]:
    def lines(lang: str) -> list[str]:
        with gzip.open(Path(data) / f"test_2016_flickr.{lang}.gz", "rt", encoding="utf-8") as f:
            return f.read().splitlines()

    return lines(src), lines(tgt)


def train_variant(name: str, args: argparse.Namespace) -> dict | None:
    """Train one variant for ``args.steps`` steps (unless done), draw its maps; returns its table row."""
    from qkv.cli import main as qkv_main

    out = Path(args.out) / name
    argv = ["train", "--data", args.data, "--src", "de", "--tgt", "en", "--out", str(out),
            "--max-steps", str(args.steps), "--device", "cpu", "--no-progress", *recipe(name)]
    print("qkv " + shlex.join(argv), flush=True)
    if args.dry_run:
        return None
    if not (out / "results.json").is_file() and qkv_main(argv) != 0:
        raise SystemExit(f"{name}: qkv train failed")
    results = json.loads((out / "results.json").read_text())
    if name.startswith("window") or name == "global":
        sentence = read_test(args.data)[0][0]
        figures = out / "attention"
        if not figures.is_dir():
            qkv_main(["attention", sentence, "--model", str(out / "best"), "--out", str(figures), "--formats", "png"])
    scores = results["test"]["best"]
    return dict(name=name, bleu=scores["bleu"], chrf=scores["chrf"], steps=results["train"]["steps"],
                minutes=results["train"]["elapsed_seconds"] / 60, extra=" ".join(VARIANTS[name][1]) or "-")


def score_inference(folder: str, mode: str, data: str) -> dict:
    """Test BLEU of one checkpoint with its config overridden at load: soft, hard or window=N."""
    from qkv.data.tokenizer import TokenizerPair
    from qkv.scoring import score
    from qkv.tasks.translation import Translator
    from qkv.train.checkpoint import load_checkpoint, model_from_config, read_config

    config = read_config(folder)
    override = {"attention": mode} if mode in ("soft", "hard") else {"attention_window": int(mode.split("=")[1])}
    config["model"] = {**config["model"], **override}
    model = load_checkpoint(folder, model=model_from_config(config, where=folder)).model.eval()
    translator = Translator(model, TokenizerPair.load(folder), "cpu")
    src, ref = read_test(data)
    t0 = time.time()
    scores = score(translator.translate(src, beam_size=5), ref)
    row = dict(mode=mode, override=json.dumps(override), **scores.as_dict(), seconds=time.time() - t0)
    print(f"{mode}: {scores.format()} ({row['seconds']:.0f} s)", flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", metavar="VARIANT", help=f"any of {', '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=600, help="optimizer steps of every variant (default 600)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "multi30k"))
    parser.add_argument("--out", default="runs/variants", help="parent folder of the runs: OUT/VARIANT")
    parser.add_argument("--checkpoint", help="score this Transformer checkpoint with --inference overrides")
    parser.add_argument("--inference", nargs="+", default=["soft", "hard"],
                        help="modes for --checkpoint: soft, hard, window=N (default: soft hard)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a shared machine)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    args = parser.parse_args()
    if bool(args.checkpoint) == bool(args.variants):
        parser.error("give VARIANTs to train, or --checkpoint to score (not both)")
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)
    print(environment(), flush=True)

    if args.checkpoint:
        rows = [score_inference(args.checkpoint, mode, args.data) for mode in args.inference]
        print(f"\n{args.checkpoint}, test_2016_flickr De→En, beam 5:\n")
        print("| inference | config override | sacreBLEU | chrF | translate time |")
        print("| --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['mode']} | `{r['override']}` | {r['bleu']:.1f} | {r['chrf']:.1f} | {r['seconds']:.0f} s |")
        return 0

    rows = [r for r in (train_variant(name, args) for name in args.variants) if r is not None]
    if rows:
        print(f"\nMulti30k De→En, {args.steps} steps each, best checkpoint, test_2016_flickr, beam 5:\n")
        print("| variant | qkv train options | steps | training time | sacreBLEU | chrF |")
        print("| --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['name']} | `{r['extra']}` | {r['steps']} | {r['minutes']:.1f} min | {r['bleu']:.1f} | "
                  f"{r['chrf']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
