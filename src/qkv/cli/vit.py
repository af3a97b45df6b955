"""`qkv vit`: a Vision Transformer on digit images — train, and draw attention rollout over a digit.

qkv vit train [--data ../shared/data/mnist] [--out runs/vit --epochs N]   (no --data: sklearn 8×8 digits)
qkv vit attention --model runs/vit --index 0 [--out rollout.png]
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from qkv.cli import CliError
from qkv.cli._common import add_precision_option, print_precision
from qkv.data.mnist import load_digits_8x8, load_mnist_t10k, random_shift
from qkv.models.vit import PRESETS, ViT, ViTConfig
from qkv.tasks.image_classification import accuracy, train_image_classifier
from qkv.train.checkpoint import load_checkpoint
from qkv.train.fit import ClassifyTrainConfig, save_classifier_checkpoint

# per data set: preset, epochs, lr, batch size, max shift of the augmentation
DEFAULTS = {
    "mnist-t10k": dict(preset="mnist", epochs=15, lr=2e-3, batch_size=64, shift=2),
    "sklearn-digits-8x8": dict(preset="digits", epochs=20, lr=3e-3, batch_size=32, shift=0),
}


def load_images(data: str | None):
    """MNIST t10k from ``data`` (8,000 train / 2,000 test), or scikit-learn's 8×8 digits when ``None``."""
    return load_mnist_t10k(data) if data else load_digits_8x8()


def cmd_train(args) -> int:
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    splits = load_images(args.data)
    d = DEFAULTS[splits.name]
    preset = args.preset or d["preset"]
    config = ViTConfig.preset(preset, image_size=splits.image_size)
    model = ViT(config)
    train_cfg = ClassifyTrainConfig(
        epochs=args.epochs or d["epochs"],
        batch_size=args.batch_size or d["batch_size"],
        lr=args.lr or d["lr"],
        weight_decay=0.05,
        seed=args.seed,
        precision=args.precision,
    )
    print_precision(args.precision, next(model.parameters()).device)
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
        on_epoch=report,
    )
    seconds = time.perf_counter() - start
    acc = accuracy(model, splits.test_x, splits.test_y.tolist())
    data_dir = str(args.data) if args.data else None
    extra = dict(data=splits.name, data_dir=data_dir, seconds=seconds)
    save_classifier_checkpoint(args.out, model, train_cfg, history, metrics={"test_acc": acc}, **extra)
    print(f"test accuracy {acc:.4f} after {seconds:.0f}s; saved to {args.out}")
    return 0


def cmd_attention(args) -> int:
    from qkv.viz.export import export_attention  # matplotlib: imported only when drawing
    from qkv.viz.maps import collect_kinds, patch_labels
    from qkv.viz.rollout import attention_rollout, cls_patch_map, save_overlay
    from qkv.viz.walk import model_walk

    loaded = load_checkpoint(args.model)
    model = loaded.model
    if not isinstance(model, ViT):
        raise CliError(f"{args.model} is not a ViT model")
    data = args.data if args.data is not None else loaded.config.get("data_dir")
    splits = load_images(data)
    if splits.image_size != model.config.image_size:
        raise CliError(f"images are {splits.image_size}px but the model expects {model.config.image_size}px")
    if not 0 <= args.index < len(splits.test_x):
        raise CliError(f"--index must be in 0..{len(splits.test_x) - 1}, got {args.index}")
    image = splits.test_x[args.index : args.index + 1]  # (1, 1, S, S)
    with torch.no_grad():
        logits, maps = model(image, return_attention=True)
    heat = cls_patch_map(attention_rollout(maps), model.config.grid)[0]  # (g, g)
    pred, label = int(logits.argmax()), int(splits.test_y[args.index])
    out = Path(args.out or Path(args.model) / f"rollout_{args.index}.png")
    save_overlay(image[0], heat, out, title=f"test image {args.index}: label {label}, predicted {pred}")
    print(f"label {label}, predicted {pred}; attention rollout written to {out}")
    # every layer and head over the patches ("cls", "p0", "p1", … in row-major order), as for text
    tokens = patch_labels(model.config.n_patches)
    kinds = collect_kinds({"encoder_self": maps}, {"encoder_self": (tokens, tokens)})
    maps_dir = out.with_suffix("")
    walk = model_walk(model, lambda: model(image, return_attention=True))  # each cell's arithmetic, by hand
    written = export_attention(kinds, maps_dir, title=f"ViT attention, test image {args.index}",
                               subtitle=f"label {label}, predicted {pred}", formats=("png",), walk=walk)
    print(f"every layer and head: {len(written)} files in {maps_dir}/ (open attention.html in a browser)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("vit", help="Vision Transformer on digits: train, attention rollout")
    cmds = p.add_subparsers(dest="vit_command", metavar="ACTION", required=True)

    t = cmds.add_parser("train", help="train a ViT on MNIST t10k (--data) or scikit-learn's 8x8 digits")
    t.add_argument("--data", help="MNIST folder with t10k-*-ubyte.gz (default: scikit-learn 8x8 digits)")
    t.add_argument("--out", default="runs/vit", help="folder to write the model to")
    t.add_argument("--preset", choices=sorted(PRESETS), help="model size (default: by data set)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--shift", type=int, help="random-shift augmentation in pixels (0 = off)")
    t.add_argument("--seed", type=int, default=0)
    add_precision_option(t)
    t.set_defaults(func=cmd_train)

    a = cmds.add_parser("attention", help="draw the [CLS] attention rollout over a test image (PNG)")
    a.add_argument("--model", required=True, help="folder written by `qkv vit train`")
    a.add_argument("--index", type=int, default=0, help="index into the test images")
    a.add_argument("--data", help="image folder (default: the one the model was trained on)")
    a.add_argument("--out", help="PNG path (default: MODEL/rollout_INDEX.png)")
    a.set_defaults(func=cmd_attention)
