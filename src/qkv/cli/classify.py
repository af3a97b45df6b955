"""`qkv classify`: BERT-style sentence classification on SST-2 — pretrain (MLM), train, predict.

qkv classify train --data ../shared/data/sst2 --out runs/sst2 [--epochs 3 --preset sst2 --init DIR]
qkv classify pretrain --data ../shared/data/sst2 --out runs/sst2-mlm [--epochs 3]
qkv classify predict --model runs/sst2 "a gripping , funny film"   (or --file sentences.txt)
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from qkv.cli import CliError
from qkv.cli._common import add_precision_option, add_set_option, parse_overrides, print_precision
from qkv.data.sst2 import find_sst2, read_sst2
from qkv.data.tokenizer import SubwordTokenizer, TokenizerFile
from qkv.models.classifier import PRESETS, ClassifierConfig, TextClassifier
from qkv.tasks.text_classification import (
    SST2_LABELS,
    MLMConfig,
    encode,
    load_pretrained_encoder,
    predict_logits,
    pretrain_mlm,
    train_text_classifier,
)
from qkv.train.checkpoint import load_checkpoint, read_config
from qkv.train.fit import ClassifyTrainConfig
from qkv.train.fit import save_classifier_checkpoint as save


def _new_model(args, tokenizer: SubwordTokenizer) -> TextClassifier:
    overrides = parse_overrides(args.overrides)
    overrides.update(vocab_size=tokenizer.vocab_size + 1, mask_id=tokenizer.vocab_size)  # last id = [MASK]
    if args.pooling:
        overrides["pooling"] = args.pooling
    if args.dropout is not None:
        overrides["dropout"] = args.dropout
    return TextClassifier(ClassifierConfig.preset(args.preset, **overrides))


def _load_data(args):
    splits = find_sst2(args.data)
    return read_sst2(splits["train"]), read_sst2(splits["dev"])


def _tokenizer(args, train_sentences: list[str]) -> SubwordTokenizer:
    return SubwordTokenizer.train(train_sentences, args.vocab_size, args.tokenizer)


def cmd_pretrain(args) -> int:
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    train, _ = _load_data(args)
    tokenizer = _tokenizer(args, train.sentences)
    model = _new_model(args, tokenizer)
    ids = encode(tokenizer, train.sentences, model.config.max_len)
    print(f"MLM pre-training on {len(ids)} SST-2 training sentences, {model.num_parameters():,} parameters")
    config = MLMConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    history = pretrain_mlm(
        model,
        ids,
        config,
        on_epoch=lambda r: print(f"epoch {r['epoch']}: mlm loss {r['loss']:.3f}  masked acc {r['accuracy']:.3f}"),
    )
    metrics = {"mlm_loss": history[-1]["loss"], "masked_acc": history[-1]["accuracy"]}
    seconds = time.perf_counter() - start
    out = save(args.out, model, config, history, metrics=metrics, tokenizer=tokenizer, task="mlm", seconds=seconds)
    print(f"saved pre-trained encoder to {out} ({time.perf_counter() - start:.0f}s)")
    return 0


def cmd_train(args) -> int:
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
        overrides = {}
        if args.dropout is not None:
            overrides["dropout"] = args.dropout
        model = TextClassifier(ClassifierConfig.from_dict({**info["model"], **overrides}, where=f"--init {args.init}"))
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
    config = ClassifyTrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        word_dropout=args.word_dropout if args.word_dropout is not None else (0.0 if args.init else 0.2),
        seed=args.seed,
        precision=args.precision,
    )
    print_precision(args.precision, next(model.parameters()).device)

    def report(r):
        print(
            f"epoch {r['epoch']}: loss {r['loss']:.4f}  train acc {100 * r['train_acc']:.2f} %  "
            f"dev acc {100 * r['dev_acc']:.3f} %"
        )

    history = train_text_classifier(model, train_ids, train.labels, config, dev=(dev_ids, dev.labels), on_epoch=report)
    seconds = time.perf_counter() - start
    init = str(args.init) if args.init else None
    metrics = {"dev_acc": history[-1]["dev_acc"]}
    extra = dict(task="sst2", labels=SST2_LABELS, init=init, seconds=seconds)
    out = save(args.out, model, config, history, metrics=metrics, tokenizer=tokenizer, **extra)
    print(f"dev accuracy {100 * history[-1]['dev_acc']:.3f} % after {seconds:.0f}s; saved to {out}")
    return 0


def cmd_predict(args) -> int:
    folder = Path(args.model)
    loaded = load_checkpoint(folder)
    model = loaded.model
    if not isinstance(model, TextClassifier):
        raise CliError(f"{folder} is not a text classifier")
    tokenizer = TokenizerFile.load(folder)
    sentences = list(args.sentences)
    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise FileNotFoundError(f"--file not found: {path}")
        sentences += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not sentences:
        raise CliError("give sentences to classify as arguments or with --file")
    labels = loaded.config.get("labels") or [str(i) for i in range(model.config.n_classes)]
    probs = predict_logits(model, encode(tokenizer, sentences, model.config.max_len)).softmax(-1)
    for sentence, p in zip(sentences, probs):
        k = int(p.argmax())
        print(f"{labels[k]}\t{p[k]:.3f}\t{sentence}")
    return 0


def _common(p, epochs: int, lr: float, batch_size: int) -> None:
    p.add_argument("--data", required=True, help="SST-2 folder with train.tsv and dev.tsv")
    p.add_argument("--out", required=True, help="folder to write the model to")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr, help="peak learning rate (AdamW, warm-up, linear decay)")
    p.add_argument("--preset", default="sst2", choices=sorted(PRESETS), help="model size (ClassifierConfig)")
    p.add_argument("--pooling", choices=["cls", "mean"], help="override the preset's pooling")
    p.add_argument("--dropout", type=float, help="override the preset's dropout")
    add_set_option(p)
    p.add_argument("--vocab-size", type=int, default=16000)
    p.add_argument("--tokenizer", default="word", choices=["word", "bpe", "unigram"])
    p.add_argument("--seed", type=int, default=0)


def register(sub) -> None:
    p = sub.add_parser("classify", help="sentence classification (SST-2): pretrain, train, predict")
    cmds = p.add_subparsers(dest="classify_command", metavar="ACTION", required=True)

    t = cmds.add_parser("train", help="train (or fine-tune) a classifier on SST-2; reports dev accuracy")
    _common(t, epochs=3, lr=1e-3, batch_size=64)
    t.add_argument("--weight-decay", type=float, default=0.01)
    t.add_argument(
        "--word-dropout",
        type=float,
        help="replace training tokens by [UNK] with this probability (default 0.2 from scratch, 0 with --init)",
    )
    t.add_argument("--init", help="a folder written by `qkv classify pretrain` to fine-tune from")
    add_precision_option(t)
    t.set_defaults(func=cmd_train)

    m = cmds.add_parser("pretrain", help="masked-language-model pre-training on the SST-2 training sentences")
    _common(m, epochs=3, lr=1e-3, batch_size=128)
    m.set_defaults(func=cmd_pretrain)

    q = cmds.add_parser("predict", help="classify sentences with a trained model")
    q.add_argument("--model", required=True, help="folder written by `qkv classify train`")
    q.add_argument("sentences", nargs="*", help="sentences to classify")
    q.add_argument("--file", help="a text file, one sentence a line")
    q.set_defaults(func=cmd_predict)
