"""Helpers shared by the command modules: devices, logging, the training options."""

from __future__ import annotations

import argparse
import ast
import logging
import sys
from typing import Any

import torch

from qkv.config import ConfigError
from qkv.train.config import TrainConfig
from qkv.train.precision import PRECISIONS, describe_precision


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as torch understands it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


def add_set_option(group) -> None:
    """``--set KEY=VALUE`` (repeatable): override a field of the model preset; read with :func:`parse_overrides`."""
    group.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="KEY=VALUE",
        help="override a model option, e.g. --set d_model=384 --set norm=pre (repeatable)",
    )


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["d_model=256", "norm=pre"]`` -> ``{"d_model": 256, "norm": "pre"}`` (values parsed as Python literals)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw  # a bare word such as pre / gelu
        out[key.strip()] = value
    return out


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def add_precision_option(group, what: str = "training") -> None:
    """``--precision auto|fp32|bf16`` and its older spelling ``--bf16`` (= ``--precision bf16``). The default is
    fp32, the paper's numbers (and the outputs of earlier versions); ``auto`` is the fast choice."""
    group.add_argument(
        "--precision", choices=PRECISIONS, default="fp32",
        help=f"{what} precision: fp32 (default: the paper's numbers), bf16 autocast, or auto = bf16 on CUDA "
        "and on CPUs with AVX512-BF16/AMX, else fp32",
    )  # fmt: skip
    group.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help="= --precision bf16")


def print_precision(precision: str, device) -> None:
    """Say on stderr what ``--precision`` became on ``device`` (``auto`` -> bf16 or fp32, and why)."""
    print(describe_precision(precision, device), file=sys.stderr)


def add_train_options(p: argparse.ArgumentParser) -> None:
    """Options of :class:`qkv.train.config.TrainConfig` (paper defaults, §5)."""
    g = p.add_argument_group("training (§5 of the paper)")
    g.add_argument("--max-tokens", type=int, default=4096, help="padded tokens per batch (default 4096)")
    g.add_argument("--accum-steps", type=int, default=1, help="micro-batches per optimizer step")
    g.add_argument("--epochs", type=int, default=None, help="stop after this many epochs")
    g.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    g.add_argument("--max-minutes", type=float, default=None, help="stop after this much wall time")
    g.add_argument("--lr-schedule", choices=["noam", "inverse_sqrt", "constant"], default="noam",
                   help="noam = Eq. 3 (default); inverse_sqrt/constant need --lr")
    g.add_argument("--warmup", type=int, default=4000, help="warm-up steps (4000 in the paper)")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (inverse_sqrt/constant)")
    g.add_argument("--lr-scale", type=float, default=1.0, help="factor on Eq. 3 (noam)")
    g.add_argument("--label-smoothing", type=float, default=0.1, help="ε_ls (0.1 in the paper)")
    g.add_argument("--clip-norm", type=float, default=None, help="clip the gradient norm (off by default)")
    g.add_argument("--seed", type=int, default=1, help="seed: a CPU run repeats exactly")
    add_precision_option(g)
    g.add_argument("--eval-every", type=int, default=None, help="also validate every N steps")
    g.add_argument("--keep-checkpoints", type=int, default=5, help="periodic checkpoints kept for averaging")
    g.add_argument("--save-every", type=int, default=None, help="write a checkpoint every N steps")
    g.add_argument("--log-every", type=int, default=100, help="log every N steps")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument(
        "--fsdp", action="store_true", help="fully sharded data parallel, under torchrun (NCCL on GPUs, gloo on CPUs)"
    )
    g.add_argument("--activation-checkpointing", action="store_true", help="recompute activations (memory)")
    g.add_argument("--compile", action="store_true", help="torch.compile the training forward (GPU speed)")


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    if args.epochs is None and args.max_steps is None and args.max_minutes is None:
        args.epochs = 10
    return TrainConfig(
        max_tokens=args.max_tokens,
        accum_steps=args.accum_steps,
        max_steps=args.max_steps,
        max_epochs=args.epochs,
        max_time_minutes=args.max_minutes,
        lr_schedule=args.lr_schedule,
        warmup_steps=args.warmup,
        lr=args.lr,
        lr_scale=args.lr_scale,
        label_smoothing=args.label_smoothing,
        clip_norm=args.clip_norm,
        seed=args.seed,
        precision=args.precision,
        eval_every_steps=args.eval_every,
        save_every_steps=args.save_every,
        keep_checkpoints=args.keep_checkpoints,
        log_every_steps=args.log_every,
        progress=not args.no_progress,
        fsdp=args.fsdp,
        activation_checkpointing=args.activation_checkpointing,
        compile=args.compile,
    )
