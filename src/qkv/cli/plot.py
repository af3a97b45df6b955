"""`qkv plot`: draw a run's loss and validation curves from its metrics.jsonl into a PNG."""

from __future__ import annotations

import argparse

from qkv.cli import CliError

EXAMPLES = """\
examples:
  qkv plot runs/de-en                       # -> runs/de-en/curves.png
  qkv plot runs/sst2 --out sst2-curves.pdf
"""


def register(sub) -> None:
    p = sub.add_parser(
        "plot",
        help="draw the loss and validation curves of a run (metrics.jsonl) into a PNG",
        description="Read RUN/metrics.jsonl (written by qkv train, classify, vit and demo) and draw the training "
        "loss, validation loss and validation scores (BLEU or accuracy) against the step.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="run folder with metrics.jsonl (or the metrics.jsonl file itself)")
    p.add_argument("--out", help="image file (default RUN/curves.png; .png, .pdf, .svg)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qkv.viz.curves import plot_run

    path = plot_run(args.run, args.out)
    if path is None:
        raise CliError(f"{args.run}: the metrics log holds no loss or validation score to draw")
    print(f"curves: {path}")
    return 0
