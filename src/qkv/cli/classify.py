"""`qkv classify`: BERT-style sentence classification on SST-2 — pretrain (MLM), train, predict.

qkv classify train --data ../shared/data/sst2 --out runs/sst2 [--epochs 3 --preset sst2 --init DIR]
qkv classify pretrain --data ../shared/data/sst2 --out runs/sst2-mlm [--epochs 3]
qkv classify predict --model runs/sst2 "a gripping , funny film"   (or --file sentences.txt, or stdin)
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from qkv.cli import CliError
from qkv.cli._common import (
    add_bf16_alias,
    add_set_option,
    parse_overrides,
    print_precision,
    resolve_device,
    stdin_lines,
)
from qkv.cli._progress import add_progress_option, progress_factory
from qkv.cli._runlog import RunLog, add_tensorboard_option
from qkv.cli.options import (
    ConfigOptions,
    add_device_options,
    fraction,
    integer,
    non_negative_float,
    positive_float,
    positive_int,
)
from qkv.cli.parser import ConfigFile, add_config_option, model_overrides, run_record
from qkv.data.sst2 import find_sst2, read_sst2
from qkv.data.text import check_text, read_lines
from qkv.data.tokenizer import SubwordTokenizer, TokenizerFile
from qkv.models.classifier import PRESETS, ClassifierConfig, TextClassifier
from qkv.tasks.text_classification import (
    SST2_LABELS,
    MLMConfig,
    encode,
    load_pretrained_encoder,
    pretrain_mlm,
    train_text_classifier,
)
from qkv.train.checkpoint import read_config
from qkv.train.fit import ClassifyTrainConfig, best_epoch
from qkv.train.fit import save_classifier_checkpoint as save
from qkv.train.precision import PRECISIONS
from qkv.train.run_folder import claim_run_folder

_FIT_TYPES = dict(lr=positive_float, weight_decay=non_negative_float, warmup=fraction, label_smoothing=fraction,
                  grad_clip=non_negative_float, word_dropout=fraction, mask_prob=fraction, seed=integer)
#: the flags of `classify train` (ClassifyTrainConfig) and `classify pretrain` (MLMConfig)
TRAIN_OPTIONS = ConfigOptions(
    ClassifyTrainConfig, defaults={"epochs": 3, "word_dropout": None}, types=_FIT_TYPES,
    choices={"precision": PRECISIONS},
    helps={"word_dropout": "replace training tokens by [UNK] with this probability (default: 0.2 from scratch, "
                           "0 with --init)"},
)  # fmt: skip
PRETRAIN_OPTIONS = ConfigOptions(MLMConfig, types=_FIT_TYPES)
#: model options beside --preset / --set (None: the preset's)
MODEL_OPTIONS = ConfigOptions(
    ClassifierConfig, only=("pooling", "dropout"), defaults={"pooling": None, "dropout": None},
    types={"dropout": fraction}, choices={"pooling": ("cls", "mean")},
    helps={"pooling": "override the preset's pooling (default: the preset's)",
           "dropout": "override the preset's dropout (default: the preset's)"},
)  # fmt: skip


def _model_options(args) -> dict:
    return {k: v for k, v in MODEL_OPTIONS.values(args).items() if v is not None}


def options_from_checkpoint(data) -> dict:
    """A classifier's ``config.json`` without recorded options: its model (as ``--set``) and ``--init``."""
    return {**model_overrides(data["model"], ("vocab_size", "mask_id")), "init": data.get("init")}


def _new_model(args, tokenizer: SubwordTokenizer) -> TextClassifier:
    overrides = parse_overrides(args.overrides)
    overrides.update(vocab_size=tokenizer.vocab_size + 1, mask_id=tokenizer.vocab_size)  # last id = [MASK]
    overrides.update(_model_options(args))
    return TextClassifier(ClassifierConfig.preset(args.preset, **overrides)).to(resolve_device(args.device))


def _load_data(args):
    splits = find_sst2(args.data)
    return read_sst2(splits["train"]), read_sst2(splits["dev"])


def _tokenizer(args, train_sentences: list[str]) -> SubwordTokenizer:
    return SubwordTokenizer.train(train_sentences, args.vocab_size, args.tokenizer)


def _claim(args):
    """Lock ``--out`` for the run; refuse a folder that holds something unless ``--overwrite``."""
    return claim_run_folder(args.out, resume=False, overwrite=args.overwrite, can_resume=False)


def cmd_pretrain(args) -> int:
    # OUT/train.log, OUT/metrics.jsonl, curves.png (moved into the model folder at the end)
    with _claim(args), RunLog(args.out, tensorboard=args.tensorboard, staged=True) as runlog:
        return _pretrain(args, runlog)


def _pretrain(args, runlog: RunLog) -> int:
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    train, _ = _load_data(args)
    tokenizer = _tokenizer(args, train.sentences)
    model = _new_model(args, tokenizer)
    ids = encode(tokenizer, train.sentences, model.config.max_len)
    print(f"MLM pre-training on {len(ids)} SST-2 training sentences, {model.num_parameters():,} parameters")
    config = PRETRAIN_OPTIONS.build(args)
    history = pretrain_mlm(
        model,
        ids,
        config,
        on_epoch=runlog.epochs(
            lambda r: print(f"epoch {r['epoch']}: mlm loss {r['loss']:.3f}  masked acc {r['accuracy']:.3f}")
        ),
        on_step=runlog.steps(),
        progress=progress_factory(args),
    )
    metrics = {"mlm_loss": history[-1]["loss"], "masked_acc": history[-1]["accuracy"]}
    seconds = time.perf_counter() - start
    out = save(args.out, model, config, history, metrics=metrics, tokenizer=tokenizer, task="mlm", seconds=seconds,
               **run_record(args))
    print(f"saved pre-trained encoder to {out} ({time.perf_counter() - start:.0f}s)")
    return 0


def cmd_train(args) -> int:
    # OUT/train.log, OUT/metrics.jsonl, curves.png (moved into the model folder at the end)
    with _claim(args), RunLog(args.out, tensorboard=args.tensorboard, staged=True) as runlog:
        return _train(args, runlog)


def _train(args, runlog: RunLog) -> int:
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    train, dev = _load_data(args)
    if args.init:
        info = read_config(args.init)
        if info.get("arch") != "classifier" or not isinstance(info.get("model"), dict):
            raise CliError(f"--init {args.init} is a {info.get('arch')!r} model, not a classifier")
        tokenizer = TokenizerFile.load(args.init)
        if args.pooling and args.pooling != info["model"].get("pooling"):
            raise CliError(f"--pooling {args.pooling} differs from the pre-trained model's pooling")
        overrides = {k: v for k, v in _model_options(args).items() if k == "dropout"}
        model = TextClassifier(ClassifierConfig.from_dict({**info["model"], **overrides}, where=f"--init {args.init}"))
        model.to(resolve_device(args.device))
        fresh = load_pretrained_encoder(model, args.init)
        print(f"initialised from {args.init} (fresh: {', '.join(fresh) or 'nothing'})")
    else:
        tokenizer = _tokenizer(args, train.sentences)
        model = _new_model(args, tokenizer)
    max_len = model.config.max_len
    train_ids, dev_ids = (
        encode(tokenizer, train.sentences, max_len),
        encode(tokenizer, dev.sentences, max_len),
    )
    print(
        f"SST-2: {len(train_ids)} train / {len(dev_ids)} dev sentences, vocab {tokenizer.vocab_size}, "
        f"{model.num_parameters():,} parameters, pooling={model.config.pooling}"
    )
    # word dropout regularises training from scratch; a pre-trained encoder is fine-tuned without it
    word_dropout = args.word_dropout if args.word_dropout is not None else (0.0 if args.init else 0.2)
    config = TRAIN_OPTIONS.build(args, word_dropout=word_dropout)
    print_precision(config.precision, next(model.parameters()).device)

    def report(r):
        print(
            f"epoch {r['epoch']}: loss {r['loss']:.4f}  train acc {100 * r['train_acc']:.2f} %  "
            f"dev acc {100 * r['dev_acc']:.3f} %"
        )

    history = train_text_classifier(model, train_ids, train.labels, config, dev=(dev_ids, dev.labels),
                                    on_epoch=runlog.epochs(report), on_step=runlog.steps(),
                                    progress=progress_factory(args), keep_best=True)  # fmt: skip
    seconds = time.perf_counter() - start
    init = str(args.init) if args.init else None
    best = history[best_epoch(history, "dev_acc") - 1]  # the model holds this epoch's weights
    metrics = {"dev_acc": best["dev_acc"]}
    extra = dict(task="sst2", labels=SST2_LABELS, init=init, seconds=seconds, best_epoch=best["epoch"],
                 **run_record(args))
    out = save(args.out, model, config, history, metrics=metrics, tokenizer=tokenizer, **extra)
    print(f"best dev accuracy {100 * best['dev_acc']:.3f} % (epoch {best['epoch']} of {len(history)}) after "
          f"{seconds:.0f}s; saved that epoch's model to {out}")
    return 0


def cmd_predict(args) -> int:
    from qkv.cli._models import open_model

    classifier = open_model(args.model, args.device, "text-classifier")
    if args.sentences and args.file:
        raise CliError("give sentences or --file, not both")
    if args.sentences:
        chunks = [[check_text(s, f"argument {i}") for i, s in enumerate(args.sentences, start=1)]]
    elif args.file:
        path = Path(args.file)
        if not path.is_file():
            raise FileNotFoundError(f"--file not found: {path}")
        chunks = [[line.strip() for line in read_lines(path) if line.strip()]]
    else:  # standard input, as `qkv translate` reads it: answered chunk by chunk
        chunks = _chunks(line.strip() for line in stdin_lines() if line.strip())
    for chunk in chunks:
        for sentence, p in zip(chunk, classifier.predict(chunk)):
            print(f"{p.label}\t{p.probability:.3f}\t{sentence}", flush=not args.file)
    return 0


def _chunks(lines, size: int = 256):
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


EXAMPLES = {
    "train": """\
examples:
  qkv classify train --data ../shared/data/sst2 --out runs/sst2
  qkv classify train --data ../shared/data/sst2 --out runs/sst2-ft --init runs/sst2-mlm --epochs 2
  qkv classify train --config runs/sst2/config.json --out runs/sst2-again      # repeat a run
""",
    "pretrain": """\
examples:
  qkv classify pretrain --data ../shared/data/sst2 --out runs/sst2-mlm --epochs 3
""",
    "predict": """\
examples:
  qkv classify predict --model runs/sst2 "a gripping , funny film" "a dull mess"
  qkv classify predict --model runs/sst2 --file sentences.txt
  cat sentences.txt | qkv classify predict --model runs/sst2
""",
}


def _common(p, command: str, options: ConfigOptions) -> None:
    add_config_option(p, ConfigFile(command, sections=(options, MODEL_OPTIONS), train=options,
                                    from_checkpoint=options_from_checkpoint))  # fmt: skip
    p.add_argument("--data", required=True, help="SST-2 folder with train.tsv and dev.tsv")
    p.add_argument("--out", required=True, help="folder to write the model to")
    p.add_argument("--overwrite", action="store_true", help="delete what --out holds and start afresh")
    options.add_to(p)
    if "precision" in {f.name for f in options.fields()}:  # classify train; pretrain (MLMConfig) has no precision
        add_bf16_alias(p)
    p.add_argument("--preset", default="sst2", choices=sorted(PRESETS), help="model size (ClassifierConfig)")
    MODEL_OPTIONS.add_to(p)
    add_set_option(p)
    p.add_argument("--vocab-size", type=positive_int, default=16000, help="vocabulary size of the tokenizer")
    p.add_argument("--tokenizer", default="word", choices=["word", "bpe", "unigram"], help="tokenizer model")
    add_device_options(p)
    add_progress_option(p)
    add_tensorboard_option(p)


def register(sub) -> None:
    p = sub.add_parser(
        "classify", help="sentence classification (SST-2): pretrain, train, predict",
        description="BERT-style sentence classification on SST-2: MLM pre-training, (fine-)tuning, prediction.",
        epilog="examples:\n  qkv classify train --data ../shared/data/sst2 --out runs/sst2\n"
        "  qkv classify predict --model runs/sst2 \"a gripping , funny film\"\n  qkv classify ACTION --help\n",
    )  # fmt: skip
    cmds = p.add_subparsers(dest="classify_command", metavar="ACTION", required=True)

    t = cmds.add_parser(
        "train", help="train (or fine-tune) a classifier on SST-2; reports dev accuracy", epilog=EXAMPLES["train"],
        description="Train a Transformer-encoder classifier on SST-2 (or fine-tune a pre-trained one, --init); "
        "print the dev accuracy per epoch and save the model.",
    )  # fmt: skip
    _common(t, "classify train", TRAIN_OPTIONS)
    t.add_argument("--init", help="a folder written by `qkv classify pretrain` to fine-tune from")
    t.set_defaults(func=cmd_train)

    m = cmds.add_parser(
        "pretrain", help="masked-language-model pre-training on the SST-2 training sentences",
        description="Pre-train the encoder with BERT's masked-language-model objective on the SST-2 training "
        "sentences; `classify train --init` fine-tunes from it.", epilog=EXAMPLES["pretrain"],
    )  # fmt: skip
    _common(m, "classify pretrain", PRETRAIN_OPTIONS)
    m.set_defaults(func=cmd_pretrain)

    q = cmds.add_parser(
        "predict", help="classify sentences with a trained model", epilog=EXAMPLES["predict"],
        description="Print the predicted label, its probability and the sentence, one line each.",
    )  # fmt: skip
    q.add_argument("--model", required=True, help="folder written by `qkv classify train`, or a Hugging Face "
                   "BertForSequenceClassification folder / hub id")
    q.add_argument("sentences", nargs="*", help="sentences to classify (default: read --file or stdin)")
    q.add_argument("--file", help="a text file, one sentence a line")
    add_device_options(q)
    q.set_defaults(func=cmd_predict)
