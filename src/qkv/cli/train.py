"""`qkv train`: train a translation model on a parallel corpus, then score it on the test set."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

from qkv.cli._common import (
    add_set_option,
    add_train_options,
    parse_overrides,
    resolve_device,
    setup_logging,
    train_config_from_args,
)

log = logging.getLogger("qkv.cli")

EXAMPLES = """\
examples:
  # a small Transformer on Multi30k German->English, on a CPU (about 30 minutes)
  qkv train --data ../shared/data/multi30k --src de --tgt en --preset small --max-minutes 30 --out runs/de-en
  # the same, in bf16 where the CPU has it (AVX512-BF16 / AMX), else fp32; the log says which
  qkv train --data ../shared/data/multi30k --src de --tgt en --preset small --precision auto --out runs/de-en
  # the base model on a GPU, bf16
  qkv train --data ../shared/data/multi30k --src de --tgt en --preset base --precision bf16 --out runs/de-en-base
  # the RNN baselines with the same data, tokenizer, batching, decoding and scoring
  qkv train --data ../shared/data/multi30k --src de --tgt en --arch rnn-attention --out runs/gru-att
  # continue a run that stopped (same --out)
  qkv train --data ../shared/data/multi30k --src de --tgt en --out runs/de-en --resume --epochs 20
  # more GPUs or CPU processes: torchrun --nproc_per_node=2 -m qkv.cli train ...
"""


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a translation model (Transformer or RNN baseline)",
        description="Train a translation model on a parallel corpus (train/val/test files, one sentence a "
        "line, plain or .gz), evaluate it on the test set with sacreBLEU, and save checkpoints.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = p.add_argument_group("data")
    d.add_argument("--data", required=True, help="folder with {train,val,test_2016_flickr}.{SRC,TGT}[.gz]")
    d.add_argument("--src", required=True, help="source language suffix, e.g. de")
    d.add_argument("--tgt", required=True, help="target language suffix, e.g. en")
    d.add_argument("--vocab-size", type=int, default=8000, help="subword vocabulary size (default 8000)")
    d.add_argument("--tokenizer", choices=["bpe", "unigram", "word"], default="bpe", help="subword model")
    d.add_argument("--separate-vocab", action="store_true", help="one vocabulary per language (default: joint)")
    d.add_argument("--max-words", type=int, default=None, help="longest sentence accepted, in words")
    d.add_argument("--skip-invalid", action="store_true", help="drop (and count) empty/over-long/bad lines")
    m = p.add_argument_group("model")
    m.add_argument("--arch", choices=["transformer", "rnn", "rnn-attention"], default="transformer")
    m.add_argument("--preset", default="small", help="tiny | small (CPU) | base | big (GPU); default small")
    add_set_option(m)
    add_train_options(p)
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, help="run folder: checkpoints last/ best/ averaged/, results.json")
    o.add_argument("--resume", action="store_true", help="continue from OUT/last")
    o.add_argument("--no-bleu", action="store_true", help="select the best checkpoint by loss, skip val BLEU")
    o.add_argument("--average-last", type=int, default=5, help="average the last k checkpoints (§6.1)")
    o.add_argument("--test-beam", type=int, default=5, help="beam size for the final test evaluation")
    o.add_argument("--no-test", action="store_true", help="skip the final test evaluation")
    o.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qkv.data.tokenizer import TokenizerPair
    from qkv.tasks.translation import build_translation_model, greedy_bleu, prepare_data, write_averaged_checkpoint
    from qkv.train import train
    from qkv.train.checkpoint import model_from_config, read_config

    setup_logging()
    if args.arch != "transformer" and args.lr_schedule == "noam":
        # Eq. 3 is defined through d_model, which an RNN does not have: use a peak learning rate instead.
        args.lr_schedule, args.lr = "inverse_sqrt", args.lr or 1e-3
        args.warmup = min(args.warmup, 1000)
    is_main = int(os.environ.get("RANK", "0")) == 0
    out = Path(args.out)
    config = train_config_from_args(args)
    device = resolve_device(args.device) if "LOCAL_RANK" not in os.environ else None
    last = out / "last"
    tokenizers = TokenizerPair.load(last) if args.resume and last.is_dir() else None
    if args.resume and tokenizers is None:
        raise ValueError(f"--resume: no checkpoint at {last} (train without --resume first)")

    t0 = time.time()
    data = prepare_data(
        args.data, args.src, args.tgt,
        vocab_size=args.vocab_size, tokenizer_model=args.tokenizer, joint=not args.separate_vocab,
        max_words=args.max_words, skip_invalid=args.skip_invalid, tokenizers=tokenizers,
    )
    if args.resume:
        model = model_from_config(read_config(last), where=str(last / "config.json"))
    else:
        model = build_translation_model(args.arch, args.preset, data.tokenizers, parse_overrides(args.overrides))
    if is_main:
        log.info(
            "data: %d train / %d val pairs, vocab %d/%d (%s%s), prepared in %.1fs; dropped: %s",
            len(data.train), len(data.valid), data.tokenizers.src.vocab_size, data.tokenizers.tgt.vocab_size,
            args.tokenizer, ", joint" if data.tokenizers.shared else ", separate", time.time() - t0,
            data.dropped or "nothing",
        )
        log.info("model: %s, %s parameters", type(model).__name__, f"{model.num_parameters():,}")

    bleu_fn = None
    if not args.no_bleu:
        bleu_fn = greedy_bleu([s for s, _ in data.valid], data.text["val"].tgt, data.tokenizers.tgt.decode)
    result = train(
        model, data.train, data.valid, config,
        out_dir=out, tokenizers=data.tokenizers, bleu_fn=bleu_fn, resume=args.resume, device=device,
    )
    if not is_main:
        return 0
    averaged = write_averaged_checkpoint(out, args.average_last) if args.average_last > 1 else None
    results = {"train": {k: str(v) if isinstance(v, Path) else v for k, v in vars(result).items()}}
    if not args.no_test:
        results["test"] = evaluate_checkpoints(
            [c for c in (result.best_checkpoint, averaged) if c is not None],
            data.text["test"], args.test_beam, device or "cpu",
        )
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"done in {(time.time() - t0) / 60:.1f} min; checkpoints in {out}/ (best/, last/"
          f"{', averaged/' if averaged else ''}); results in {out / 'results.json'}")
    return 0


def evaluate_checkpoints(paths, test, beam: int, device) -> dict[str, dict]:
    """Translate the test set with each checkpoint and score it (printed and returned)."""
    from qkv.scoring import score
    from qkv.tasks.translation import Translator

    out = {}
    for path in paths:
        t0 = time.time()
        translator = Translator.load(path, device=device)
        hyps = translator.translate(test.src, beam_size=beam)
        scores = score(hyps, test.tgt)
        out[Path(path).name] = {**scores.as_dict(), "beam": beam, "seconds": round(time.time() - t0, 1)}
        print(f"test ({Path(path).name}, beam {beam}): {scores.format()}")
    return out
