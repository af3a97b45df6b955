"""`qkv average`: the mean of a run's last k periodic checkpoints, as a checkpoint folder of its own (§6.1).

`qkv train` writes ``averaged/`` from its last ``--average-last`` checkpoints; this command averages another
window afterwards, so that the window can be chosen on the validation set (``qkv evaluate --split val``)
without training again. It keeps as many checkpoints as the run was told to keep (``--keep-checkpoints``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qkv.cli import CliError
from qkv.cli.options import positive_int

EXAMPLES = """\
examples:
  qkv average --run runs/de-en --last 20 --out runs/de-en-avg20
  qkv evaluate --model runs/de-en-avg20 --data ../shared/data/multi30k --src de --tgt en --split val
"""


def register(sub) -> None:
    p = sub.add_parser(
        "average",
        help="average the last k checkpoints of a run (choose k on val)",
        description="Average the weights of the last k periodic checkpoints (RUN/checkpoints/step_*) of a "
        "translation run into a new checkpoint folder (§6.1: the paper averages the last 5, or 20 for its big "
        "models). Tokenizers and configuration come from the newest of them.",
        epilog=EXAMPLES,
    )
    p.add_argument("--run", required=True, help="the run folder of qkv train (its --out)")
    p.add_argument("--last", required=True, type=positive_int, help="how many of the newest checkpoints, k ≥ 2")
    p.add_argument("--out", required=True, help="the new checkpoint folder (absent or empty, unless --force)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qkv.tasks.translation import write_averaged_checkpoint
    from qkv.train.checkpoint import periodic_checkpoints

    if not Path(args.run).is_dir():
        raise CliError(f"--run {args.run}: no such run folder")
    kept = periodic_checkpoints(args.run)
    if args.last < 2:
        raise CliError(f"--last {args.last}: averaging needs at least 2 checkpoints")
    if len(kept) < args.last:
        raise CliError(
            f"{args.run}: --last {args.last} but the run keeps {len(kept)} periodic checkpoints under "
            "checkpoints/ (train with --keep-checkpoints K to keep more)"
        )
    written = write_averaged_checkpoint(args.run, args.last, dest=args.out, replace=args.force)
    first, last = kept[-args.last].name, kept[-1].name
    print(f"wrote {written}: the average of {args.last} checkpoints, {first} … {last}")
    return 0
