"""`qkv translate`: translate a sentence, a file, or standard input with a trained checkpoint."""

from __future__ import annotations

import argparse
import itertools
import sys

from qkv.cli._common import add_precision_option, print_precision, stdin_lines
from qkv.cli._progress import add_progress_option, progress_factory
from qkv.cli.options import add_device_options, add_search_options, non_negative_int, positive_int

EXAMPLES = """\
examples:
  qkv translate --model runs/de-en/best "Ein Mann fährt Fahrrad."
  qkv translate --model runs/de-en/best --file test.de > test.hyp.en
  zcat test.de.gz | qkv translate --model runs/de-en/best --beam 1 > greedy.en
  qkv translate --model runs/de-en/best --beam 5 --nbest 3 "Ein Hund."   # index, score, translation
  qkv translate --model Helsinki-NLP/opus-mt-de-en "Ein Hund."        # a Hugging Face Marian (pip install 'qkv[hf]')
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
    p.add_argument("--model", required=True,
                   help="checkpoint folder (e.g. runs/de-en/best) or Hugging Face Marian folder / hub id")
    p.add_argument("--file", help="a file with one sentence a line (plain or .gz)")
    add_search_options(p)
    p.add_argument("--batch-size", type=positive_int, default=64, help="sentences decoded together")
    p.add_argument("--nbest", type=positive_int, default=None, metavar="N",
                   help="print the N best translations of each sentence (N <= --beam), as lines "
                   "'INDEX<tab>SCORE<tab>TRANSLATION' (index from 0; score: log-probability / length penalty)")
    p.add_argument("--max-len-b", type=non_negative_int, default=50,
                   help="outputs stop at source length + this many tokens (§6.1: 50)")
    add_device_options(p)
    add_progress_option(p)
    add_precision_option(p, what="decoding")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qkv.cli._models import open_model
    from qkv.data.text import check_text, read_lines

    if args.sentences and args.file:
        raise ValueError("give sentences or --file, not both")
    if args.nbest is not None and args.nbest > args.beam:
        raise ValueError(f"--nbest must be 1 … --beam ({args.beam}), got {args.nbest}")
    sentences = [check_text(s, f"argument {i}") for i, s in enumerate(args.sentences, start=1)]
    translator = open_model(args.model, args.device, "translation", precision=args.precision)
    print_precision(args.precision, translator.device)
    translator.max_len_b = args.max_len_b
    translator.early_stopping = args.early_stopping
    if sentences:
        source, name = sentences, None
    elif args.file:
        source, name = read_lines(args.file), args.file
    else:
        source, name = stdin_lines(), "<stdin>"
    if args.nbest is not None:
        return print_nbest(translator, source, args)
    # a bar (on a terminal's stderr) for a file or piped input, not for a few sentences or typed lines
    progress = progress_factory(args) if args.file or not (args.sentences or sys.stdin.isatty()) else None
    for line in translator.translate_stream(source, args.beam, args.alpha, args.batch_size, progress, name=name):
        print(line, flush=not args.file)
    return 0


def print_nbest(translator, source, args: argparse.Namespace) -> int:
    """``INDEX<tab>SCORE<tab>TRANSLATION`` lines, the N best of each sentence in turn, chunk by chunk."""
    index, chunk = 0, []
    for sentence in itertools.chain(source, [None]):  # None: the end
        if sentence is not None:
            chunk.append(sentence)
        if chunk and (sentence is None or len(chunk) == args.batch_size * 8):
            for options in translator.translate_nbest(chunk, args.nbest, args.beam, args.alpha, args.batch_size):
                for text, score in options:
                    print(f"{index}\t{score:.4f}\t{text}", flush=not args.file)
                index += 1
            chunk = []
    return 0
