"""`qkv evaluate`: score translations the way papers do (sacreBLEU cased 13a, chrF, lowercased BLEU)."""

from __future__ import annotations

import argparse
import json

from qkv.cli._common import add_precision_option, print_precision, resolve_device
from qkv.cli._progress import add_progress_option, progress_factory
from qkv.cli.options import add_device_options, add_search_options

EXAMPLES = """\
examples:
  # translate the Multi30k test set with a checkpoint and score it
  qkv evaluate --model runs/de-en/best --data ../shared/data/multi30k --src de --tgt en
  # score existing translations against references
  qkv evaluate --hyp test.hyp.en --ref ../shared/data/multi30k/test_2016_flickr.en.gz
"""


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a model (or a file of translations) with sacreBLEU and chrF",
        description="Corpus BLEU (sacreBLEU, cased, 13a tokenization) and chrF with their signatures, plus "
        "lowercased BLEU for comparison with papers that report it.",
        epilog=EXAMPLES,
    )
    p.add_argument("--model", help="checkpoint folder (or Hugging Face Marian folder / hub id) to translate with")
    p.add_argument("--data", help="corpus folder (with --src/--tgt); scores the --split")
    p.add_argument("--src", help="source language suffix")
    p.add_argument("--tgt", help="target language suffix")
    p.add_argument("--split", choices=["train", "val", "test"], default="test", help="the split of --data")
    p.add_argument("--hyp", help="file of translations (instead of --model)")
    p.add_argument("--ref", help="file of references (instead of --data)")
    add_search_options(p)
    add_device_options(p)
    add_precision_option(p, what="decoding")
    p.add_argument("--output", help="also write the translations here")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    add_progress_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qkv.data.multi30k import find_splits
    from qkv.data.text import read_lines, read_parallel
    from qkv.scoring import score

    if (args.model is None) == (args.hyp is None):
        raise ValueError("give exactly one of --model (translate, then score) or --hyp (score a file)")
    if args.data:
        if not (args.src and args.tgt):
            raise ValueError("--data needs --src and --tgt")
        src_path, tgt_path = find_splits(args.data, args.src, args.tgt)[args.split]
        pairs = read_parallel(src_path, tgt_path)
        sources, references = pairs.src, pairs.tgt
    elif args.ref:
        sources, references = None, read_lines(args.ref)
    else:
        raise ValueError("give the references: --data with --src/--tgt, or --ref")

    if args.model:
        if sources is None:
            raise ValueError("--model needs source sentences: use --data with --src/--tgt")
        from qkv.cli._models import open_model

        translator = open_model(args.model, resolve_device(args.device), "translation", precision=args.precision)
        print_precision(args.precision, translator.device)
        translator.early_stopping = args.early_stopping
        hypotheses = translator.translate(sources, beam_size=args.beam, alpha=args.alpha,
                                          progress=progress_factory(args))  # fmt: skip
    else:
        hypotheses = read_lines(args.hyp)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.writelines(h + "\n" for h in hypotheses)
    scores = score(hypotheses, references)
    print(json.dumps(scores.as_dict(), indent=2) if args.json else scores.format())
    return 0
