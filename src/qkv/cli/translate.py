"""`qkv translate`: translate a sentence, a file, or standard input with a trained checkpoint."""

from __future__ import annotations

import argparse
import sys

from qkv.cli._common import add_precision_option, print_precision, resolve_device

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
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sentences", nargs="*", help="sentences to translate (default: read --file or stdin)")
    p.add_argument("--model", required=True, help="checkpoint folder, e.g. runs/de-en/best")
    p.add_argument("--file", help="a file with one sentence a line (plain or .gz)")
    p.add_argument("--beam", type=int, default=5, help="beam size; 1 = greedy (default 5)")
    p.add_argument("--alpha", type=float, default=0.6, help="length penalty α (default 0.6)")
    p.add_argument("--batch-size", type=int, default=64, help="sentences decoded together")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    add_precision_option(p, what="decoding")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qkv.data.text import read_lines
    from qkv.tasks.translation import Translator

    translator = Translator.load(args.model, device=resolve_device(args.device), precision=args.precision)
    print_precision(args.precision, translator.device)
    if args.sentences and args.file:
        raise ValueError("give sentences or --file, not both")
    if args.sentences:
        source = args.sentences
    elif args.file:
        source = read_lines(args.file)
    else:
        source = (line.rstrip("\n") for line in sys.stdin)
    for line in translator.translate_stream(source, args.beam, args.alpha, args.batch_size):
        print(line, flush=not args.file)
    return 0
