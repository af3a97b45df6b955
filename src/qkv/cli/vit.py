"""`qkv vit`: a Vision Transformer on digit images — train, and draw attention rollout over a digit.

qkv vit train [--data ../shared/data/mnist] [--out runs/vit --epochs N]   (no --data: sklearn 8×8 digits)
qkv vit attention --model runs/vit --index 0 [--out rollout.png]      (or --image digit.png)
qkv vit attention --model google/vit-base-patch16-224 --image cat.jpg     (a Hugging Face ViT)
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from qkv.cli import CliError
from qkv.cli._common import add_bf16_alias, print_precision, resolve_device
from qkv.cli._progress import add_progress_option, progress_factory
from qkv.cli._runlog import RunLog, add_tensorboard_option
from qkv.cli.options import (
    ConfigOptions,
    add_device_options,
    add_threads_option,
    fraction,
    integer,
    non_negative_float,
    non_negative_int,
    positive_float,
)
from qkv.cli.parser import ConfigFile, add_config_option, run_record
from qkv.data.mnist import load_digits_8x8, load_mnist_t10k, random_shift
from qkv.models.vit import PRESETS, ViT, ViTConfig
from qkv.tasks.image_classification import accuracy, train_image_classifier
from qkv.train.checkpoint import read_config
from qkv.train.fit import ClassifyTrainConfig, best_epoch, save_classifier_checkpoint
from qkv.train.precision import PRECISIONS
from qkv.train.run_folder import claim_run_folder

# per data set: preset, epochs, lr, batch size, max shift of the augmentation
DEFAULTS = {
    "mnist-t10k": dict(preset="mnist", epochs=15, lr=2e-3, batch_size=64, shift=2),
    "sklearn-digits-8x8": dict(preset="digits", epochs=20, lr=3e-3, batch_size=32, shift=0),
}


def _by_data(key: str) -> str:
    mnist, digits = DEFAULTS["mnist-t10k"][key], DEFAULTS["sklearn-digits-8x8"][key]
    return f"(default: by data set, {mnist:g} for MNIST, {digits:g} for the 8x8 digits)"


#: the flags of `vit train` (ClassifyTrainConfig): epochs, lr and batch size default by data set (DEFAULTS)
TRAIN_OPTIONS = ConfigOptions(
    ClassifyTrainConfig, skip=("word_dropout",),
    defaults={"epochs": None, "batch_size": None, "lr": None, "weight_decay": 0.05},
    types=dict(lr=positive_float, weight_decay=non_negative_float, warmup=fraction, label_smoothing=fraction,
               grad_clip=non_negative_float, seed=integer),
    choices={"precision": PRECISIONS},
    helps={"epochs": f"passes over the training images {_by_data('epochs')}",
           "lr": f"peak learning rate of AdamW {_by_data('lr')}",
           "batch_size": f"images per step {_by_data('batch_size')}"},
)  # fmt: skip


def options_from_checkpoint(data) -> dict:
    """A ViT's ``config.json`` without recorded options: its data folder (the model follows from the data)."""
    return {"data": data.get("data_dir")}


EXAMPLES = """\
examples:
  qkv vit train --out runs/vit-digits                     # scikit-learn's 8x8 digits, a minute on a CPU
  qkv vit train --data ../shared/data/mnist --out runs/vit-mnist --epochs 5
  qkv vit attention --model runs/vit-digits --index 3     # the rollout over test image 3
  qkv vit train --config runs/vit-digits/config.json --out runs/vit-again --seed 1
"""


def load_images(data: str | None):
    """MNIST t10k from ``data`` (8,000 train / 2,000 test), or scikit-learn's 8×8 digits when ``None``."""
    return load_mnist_t10k(data) if data else load_digits_8x8()


def cmd_train(args) -> int:
    # OUT/train.log, OUT/metrics.jsonl, curves.png (moved into the model folder at the end)
    with claim_run_folder(args.out, resume=False, overwrite=args.overwrite, can_resume=False), \
            RunLog(args.out, tensorboard=args.tensorboard, staged=True) as runlog:
        return _train(args, runlog)


def _train(args, runlog: RunLog) -> int:
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    splits = load_images(args.data)
    d = DEFAULTS[splits.name]
    preset = args.preset or d["preset"]
    config = ViTConfig.preset(preset, image_size=splits.image_size)
    model = ViT(config).to(resolve_device(args.device))
    by_data = {k: d[k] for k in ("epochs", "batch_size", "lr") if getattr(args, k) is None}
    train_cfg = TRAIN_OPTIONS.build(args, **by_data)
    print_precision(train_cfg.precision, next(model.parameters()).device)
    shift = d["shift"] if args.shift is None else args.shift
    generator = torch.Generator().manual_seed(args.seed)
    print(
        f"{splits.name}: {len(splits.train_x)} train / {len(splits.test_x)} test images, "
        f"{config.n_patches} patches of {config.patch_size}x{config.patch_size}, {model.num_parameters():,} "
        f"parameters, {train_cfg.epochs} epochs"
    )

    def report(r):
        print(
            f"epoch {r['epoch']}: loss {r['loss']:.4f}  train acc {r['train_acc']:.4f}  "
            f"test acc {r['dev_acc']:.4f}  ({time.perf_counter() - start:.0f}s)"
        )

    history = train_image_classifier(
        model,
        splits.train_x,
        splits.train_y.tolist(),
        train_cfg,
        dev=(splits.test_x, splits.test_y.tolist()),
        augment=lambda x: random_shift(x, shift, generator),
        on_epoch=runlog.epochs(report),
        on_step=runlog.steps(),
        progress=progress_factory(args),
        keep_best=True,  # the model ends with the weights of its best epoch
    )
    seconds = time.perf_counter() - start
    acc = accuracy(model, splits.test_x, splits.test_y.tolist())
    data_dir = str(args.data) if args.data else None
    best = best_epoch(history, "dev_acc")
    extra = dict(data=splits.name, data_dir=data_dir, seconds=seconds, best_epoch=best)
    save_classifier_checkpoint(args.out, model, train_cfg, history, metrics={"test_acc": acc}, **extra,
                               **run_record(args))
    runlog({"event": "test", "step": history[-1]["step"], "accuracy": acc})
    print(f"test accuracy {acc:.4f} (best epoch {best} of {len(history)}) after {seconds:.0f}s; "
          f"saved that epoch's model to {args.out}")
    return 0


def cmd_attention(args) -> int:
    from qkv.cli._models import open_model
    from qkv.viz.export import export_attention  # matplotlib: imported only when drawing
    from qkv.viz.maps import collect_kinds
    from qkv.viz.rollout import attention_rollout, cls_patch_map, save_overlay
    from qkv.viz.walk import model_walk

    vit = open_model(args.model, "cpu", "image-classifier")
    model = vit.model
    if args.image is not None:
        image, name, label = vit.read(args.image)[None], Path(args.image).name, None  # (1, C, S, S)
        shown = vit.pixels(args.image)  # (C, S, S) in [0, 1], before normalising
        default_out = Path(args.image).with_name(f"{Path(args.image).stem}_rollout.png")
    else:
        image, label = _test_image(args, vit)  # (1, 1, S, S)
        name, shown, default_out = f"test image {args.index}", image[0], Path(args.model) / f"rollout_{args.index}.png"
    view = vit.attention(image[0])
    heat = cls_patch_map(attention_rollout(view.maps), model.config.grid)[0]  # (g, g)
    pred = view.prediction.label
    said = f"predicted {pred} ({view.prediction.probability:.3f})"
    said = f"label {label}, {said}" if label is not None else said
    out = Path(args.out or default_out)
    save_overlay(shown, heat, out, title=f"{name}: {said}")
    print(f"{said}; attention rollout written to {out}")
    # every layer and head over the patches ("cls", "p0", "p1", … in row-major order), as for text
    kinds = collect_kinds({"encoder_self": view.maps}, {"encoder_self": (view.tokens, view.tokens)})
    maps_dir = out.with_suffix("")
    walk = model_walk(model, lambda: model(view.inputs, return_attention=True))  # each cell's arithmetic, by hand
    written = export_attention(kinds, maps_dir, title=f"ViT attention, {name}", subtitle=said, formats=("png",),
                               walk=walk)  # fmt: skip
    print(f"every layer and head: {len(written)} files in {maps_dir}/ (open attention.html in a browser)")
    return 0


def _test_image(args, vit):
    """Test image ``--index`` of the data the model was trained on (or ``--data``), and its label."""
    if not (Path(args.model) / "config.json").is_file() or "arch" not in read_config(args.model):
        raise CliError(f"{args.model} is a Hugging Face ViT: give the picture to look at with --image FILE")
    data = args.data if args.data is not None else read_config(args.model).get("data_dir")
    splits = load_images(data)
    if splits.image_size != vit.model.config.image_size:
        raise CliError(f"images are {splits.image_size}px but the model expects {vit.model.config.image_size}px")
    if not 0 <= args.index < len(splits.test_x):
        raise CliError(f"--index must be in 0..{len(splits.test_x) - 1}, got {args.index}")
    return splits.test_x[args.index : args.index + 1], int(splits.test_y[args.index])


def register(sub) -> None:
    p = sub.add_parser(
        "vit", help="Vision Transformer on digits: train, attention rollout", epilog=EXAMPLES,
        description="A Vision Transformer (Dosovitskiy et al. 2021) on digit images: train it, draw its attention.",
    )  # fmt: skip
    cmds = p.add_subparsers(dest="vit_command", metavar="ACTION", required=True)

    t = cmds.add_parser(
        "train", help="train a ViT on MNIST t10k (--data) or scikit-learn's 8x8 digits", epilog=EXAMPLES,
        description="Train a ViT on MNIST t10k (--data: 8,000 train / 2,000 test images) or, without --data, on "
        "scikit-learn's 8x8 digits; print the test accuracy per epoch and save the model.",
    )  # fmt: skip
    add_config_option(t, ConfigFile("vit train", sections=(TRAIN_OPTIONS,), train=TRAIN_OPTIONS,
                                    from_checkpoint=options_from_checkpoint))  # fmt: skip
    t.add_argument("--data", help="MNIST folder with t10k-*-ubyte.gz (default: scikit-learn 8x8 digits)")
    t.add_argument("--out", default="runs/vit", help="folder to write the model to")
    t.add_argument("--overwrite", action="store_true", help="delete what --out holds and start afresh")
    t.add_argument("--preset", choices=sorted(PRESETS), help="model size (default: by data set)")
    TRAIN_OPTIONS.add_to(t)
    add_bf16_alias(t)
    shift = f"random-shift augmentation in pixels, 0 = off {_by_data('shift')}"
    t.add_argument("--shift", type=non_negative_int, help=shift)
    add_device_options(t)
    add_progress_option(t)
    add_tensorboard_option(t)
    t.set_defaults(func=cmd_train)

    a = cmds.add_parser(
        "attention", help="draw the [CLS] attention rollout over a test image (PNG)", epilog=EXAMPLES,
        description="Draw the attention rollout (Abnar & Zuidema 2020) of the [CLS] token over one test image, and "
        "every layer and head over the patches (PNG, attention.html), on the CPU.",
    )  # fmt: skip
    a.add_argument("--model", required=True, help="folder written by `qkv vit train`, or a Hugging Face "
                   "ViTForImageClassification folder / hub id (then give --image)")
    a.add_argument("--image", help="an image file (PNG, JPEG…), preprocessed as the model expects "
                   "(instead of --index)")
    a.add_argument("--index", type=int, default=0, help="index into the test images")
    a.add_argument("--data", help="image folder (default: the one the model was trained on)")
    a.add_argument("--out", help="PNG path (default: MODEL/rollout_INDEX.png, or IMAGE_rollout.png beside --image)")
    add_threads_option(a)
    a.set_defaults(func=cmd_attention)
