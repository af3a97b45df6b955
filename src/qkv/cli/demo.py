"""`qkv demo`: the built-in default — train a Transformer to read dates, with nothing to download.

The task (see :func:`qkv.data.synthetic.date_pairs`): dates written in English words, in several word orders
and styles, to ISO dates (``"the 21st of march nineteen ninety-four"`` -> ``1994-03-21``). ISO puts the year
first and English rarely does, so the cross-attention has to reorder: its map is a permutation that changes
with the style, not a diagonal. The demo goes through the same pipeline as real data: corpus files ->
tokenizers -> Transformer -> training with checkpoints -> beam search -> accuracy -> attention pictures.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from qkv.cli._common import resolve_device, setup_logging
from qkv.cli._progress import progress_factory, train_progress
from qkv.cli._runlog import RunLog, add_tensorboard_option
from qkv.cli.options import add_device_options, integer, positive_float, positive_int

log = logging.getLogger("qkv.cli")

# A small Transformer: post-LN, sinusoidal positions, as in the paper; sized for 2 CPU cores.
DEMO_MODEL = dict(d_model=128, n_heads=4, d_ff=512, n_layers=2, dropout=0.1)
EXAMPLES = [
    "the twenty-first of march nineteen ninety-four",
    "tuesday , may 3rd , 2011",
    "two thousand and five , october 30th",
]
USAGE = """\
examples:
  qkv demo                                  # 3 minutes on the CPU, everything in runs/demo/
  qkv demo --minutes 10 --out runs/demo10   # longer: close to 100 % exact matches
  qkv demo --device cuda --minutes 1
"""


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="train a small model on a built-in task (dates in words -> ISO), no download",
        description="Generate a dates-in-words -> ISO-dates corpus, train a small Transformer on it for a "
        "few minutes, print example translations and test accuracy, and save attention pictures.",
        epilog=USAGE,
    )
    p.add_argument("--out", default="runs/demo", help="run folder")
    p.add_argument("--minutes", type=positive_float, default=3.0,
                   help="training time budget; the test translations and pictures come after it")
    p.add_argument("--n-train", type=positive_int, default=30_000, help="training pairs")
    p.add_argument("--n-test", type=positive_int, default=500, help="validation and test pairs each")
    p.add_argument("--seed", type=integer, default=1, help="seed of the corpus, the model and the training")
    p.add_argument("--beam", type=positive_int, default=5, help="beam size for the test translations")
    add_device_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars (none are drawn off a terminal)")
    add_tensorboard_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    setup_logging()
    # OUT/train.log (what is printed), OUT/metrics.jsonl, TensorBoard, curves.png
    with RunLog(args.out, tensorboard=args.tensorboard) as runlog:
        return _demo(args, runlog)


def _demo(args: argparse.Namespace, runlog: RunLog) -> int:
    from qkv.data.synthetic import write_demo_corpus
    from qkv.tasks.translation import Translator, build_translation_model, greedy_bleu, prepare_data
    from qkv.train import TrainConfig, train
    from qkv.viz.export import export_attention
    from qkv.viz.maps import transformer_kinds

    t0 = time.time()
    out = Path(args.out)
    device = resolve_device(args.device)
    corpus = write_demo_corpus(out / "data", args.n_train, args.n_test, args.n_test, seed=args.seed)
    data = prepare_data(corpus, "words", "iso", vocab_size=1000, tokenizer_model="word", joint=False)
    model = build_translation_model("transformer", "tiny", data.tokenizers, {**DEMO_MODEL, "max_len": 128})
    print(
        f"qkv demo: {len(data.train):,} training pairs in {corpus}/ (e.g. {data.text['train'].src[0]!r} -> "
        f"{data.text['train'].tgt[0]!r}); a {model.num_parameters():,}-parameter Transformer on {device}, "
        f"{args.minutes:g} minutes of training (then a last validation, the test set with beam {args.beam} and "
        "the attention pictures, outside the budget)"
    )
    config = TrainConfig(
        max_tokens=2048,
        max_time_minutes=args.minutes,
        lr_schedule="inverse_sqrt",  # flagged: a short run wants a short warm-up and a higher peak than Eq. 3
        lr=2e-3,
        warmup_steps=300,
        eval_every_steps=300,
        log_every_steps=100,
        seed=args.seed,
        progress=not args.no_progress,
    )
    valid_src = [s for s, _ in data.valid]
    bleu_fn = greedy_bleu(valid_src, data.text["val"].tgt, data.tokenizers.tgt.decode,
                          progress=progress_factory(args, leave=False))  # fmt: skip
    t_train = time.time()
    result = train(
        model, data.train, data.valid, config,
        out_dir=out, tokenizers=data.tokenizers, bleu_fn=bleu_fn, device=device,
        callback=runlog, progress=train_progress(args, args.minutes),
    )  # fmt: skip
    t_test = time.time()
    print(f"trained: {result.summary()}")

    checkpoint = result.best_checkpoint or result.last_checkpoint
    translator = Translator.load(checkpoint, device=device)
    test = data.text["test"]
    hyps = translator.translate(test.src, beam_size=args.beam, progress=progress_factory(args))
    correct = [h == r for h, r in zip(hyps, test.tgt)]
    accuracy = sum(correct) / len(correct)
    runlog({"event": "test", "step": result.steps, "checkpoint": checkpoint.name, "accuracy": accuracy,
            "beam": args.beam})  # fmt: skip
    print(f"\nexample translations (beam {args.beam}):")
    for src, hyp, ref, ok in list(zip(test.src, hyps, test.tgt, correct))[:8]:
        print(f"  {'✓' if ok else '✗'} {src:<52} -> {hyp:<12}" + ("" if ok else f" (reference {ref})"))
    for sentence, hyp in zip(EXAMPLES, translator.translate(EXAMPLES, beam_size=args.beam)):
        print(f"  · {sentence:<52} -> {hyp}")
    print(f"\ntest accuracy (exact match, {len(test.tgt)} unseen sentences): {accuracy:.1%}")

    view = translator.attention(EXAMPLES[0])
    kinds = transformer_kinds(view.maps, view.src_tokens, view.tgt_tokens)
    pictures = out / "attention"
    written = export_attention(
        kinds, pictures, title="qkv demo", subtitle=f"{EXAMPLES[0]!r} -> {view.translation!r}", formats=("png",)
    )
    alignment = next(p for p in written if p.name.startswith("alignment"))
    print(f"cross-attention of {EXAMPLES[0]!r} -> {view.translation!r}: {alignment}")
    print(f"every layer and head: {pictures}/ (PNG) and {pictures / 'attention.html'} (interactive)")
    stepped, end = runlog.last_step_at or t_test, time.time()
    print(f"model: {checkpoint}; total time {(end - t0) / 60:.1f} min (training {(stepped - t_train) / 60:.1f}, "
          f"last validation {(t_test - stepped) / 60:.1f}, test and pictures {(end - t_test) / 60:.1f})")
    return 0
