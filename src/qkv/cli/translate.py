"""`qkv translate`: translate a sentence, a file, or standard input with a trained checkpoint."""

from __future__ import annotations

import argparse
import sys

from qkv.cli._common import resolve_device
from qkv.cli.options import add_device_options, finite_float, positive_int

EXAMPLES = """\
examples:
  qkv translate --model runs/de-en/best "Ein Mann fährt Fahrrad."
  qkv translate --model runs/de-en/best --file test.de > test.hyp.en
  zcat test.de.gz | qkv translate --model runs/de-en/best --beam 1 > greedy.en
"""


def register(sub) -> None:
    p = sub.add_parser(
        "translate",
        help="translate sentences with a trained model",
        description="Translate with a checkpoint folder (beam search by default, §6.1). Output: one "
        "translation a line on stdout, in input order.",
        epilog=EXAMPLES,
    )
    p.add_argument("sentences", nargs="*", help="sentences to translate (default: read --file or stdin)")
    p.add_argument("--model", required=True, help="checkpoint folder, e.g. runs/de-en/best")
    p.add_argument("--file", help="a file with one sentence a line (plain or .gz)")
    p.add_argument("--beam", type=positive_int, default=5, help="beam size; 1 = greedy")
    p.add_argument("--alpha", type=finite_float, default=0.6, help="length penalty α")
    p.add_argument("--batch-size", type=positive_int, default=64, help="sentences decoded together")
    add_device_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qkv.data.text import check_text, read_lines, read_stream
    from qkv.tasks.translation import Translator

    if args.sentences and args.file:
        raise ValueError("give sentences or --file, not both")
    sentences = [check_text(s, f"argument {i}") for i, s in enumerate(args.sentences, start=1)]
    translator = Translator.load(args.model, device=resolve_device(args.device))
    if sentences:
        source, name = sentences, None
    elif args.file:
        source, name = read_lines(args.file), args.file
    else:
        source, name = read_stream(sys.stdin.buffer), "<stdin>"
    for line in translator.translate_stream(source, args.beam, args.alpha, args.batch_size, name=name):
        print(line, flush=not args.file)
    return 0
