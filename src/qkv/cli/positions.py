"""`qkv positions`: draw the sinusoidal positional encoding matrix and the similarity of positions (§3.5)."""

from __future__ import annotations

from pathlib import Path

from qkv.cli import CliError

EXAMPLES = """\
examples:
  qkv positions                              # d_model 128, 100 positions, into ./positions/
  qkv positions --d-model 512 --max-len 200 --out figures
"""


def register(sub) -> None:
    p = sub.add_parser(
        "positions", help="draw the sinusoidal positional encodings and their similarity (PNG/SVG)",
        description="Draw the matrix of the sinusoidal positional encodings (§3.5) and the dot products of "
        "every pair of positions, as positions.png and positions.svg.",
        epilog=EXAMPLES,
    )
    p.add_argument("--d-model", type=int, default=128, help="model dimension (even)")
    p.add_argument("--max-len", type=int, default=100, help="number of positions")
    p.add_argument("--out", default="positions", help="output folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from qkv.viz.positions import positions_figure

    if args.d_model < 2 or args.d_model % 2 or args.d_model > 8192:
        raise CliError(f"--d-model must be an even number from 2 to 8192, got {args.d_model}")
    if not 1 <= args.max_len <= 5000:
        raise CliError(f"--max-len must be from 1 to 5000, got {args.max_len}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig = positions_figure(args.d_model, args.max_len)
    for fmt in ("png", "svg"):
        path = out / f"positions.{fmt}"
        fig.savefig(path, dpi=110)
        print(f"wrote {path}")
    return 0
