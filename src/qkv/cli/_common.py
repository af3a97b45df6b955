"""Helpers shared by the command modules: devices, logging, ``--set``, the training options."""

from __future__ import annotations

import argparse
import ast
import logging
import sys
from typing import Any

import torch

from qkv.cli.options import (
    ConfigOptions,
    fraction,
    integer,
    non_negative_float,
    non_negative_int,
    positive_float,
)
from qkv.config import ConfigError
from qkv.tasks.translation.translator import DECODE_PRECISIONS
from qkv.train.config import SCHEDULES, TrainConfig
from qkv.train.precision import PRECISIONS, describe_precision

#: ``qkv train`` without --epochs, --max-steps or --max-minutes trains this many epochs
DEFAULT_EPOCHS = 10


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


#: the flags of TrainConfig (``qkv train``): one per field, spelled as they always were
TRAIN_OPTIONS = ConfigOptions(
    TrainConfig,
    skip=("bf16",),  # the older spelling of precision="bf16": --bf16 below sets --precision
    rename={"max_epochs": "epochs", "max_time_minutes": "max_minutes", "warmup_steps": "warmup",
            "eval_every_steps": "eval_every", "save_every_steps": "save_every", "log_every_steps": "log_every"},
    negate={"progress": "no_progress"},
    types={"max_time_minutes": positive_float, "warmup_steps": non_negative_int, "lr": positive_float,
           "lr_scale": positive_float, "adam_beta1": fraction, "adam_beta2": fraction, "adam_eps": positive_float,
           "weight_decay": non_negative_float, "label_smoothing": fraction, "clip_norm": positive_float,
           "seed": integer},
    choices={"lr_schedule": SCHEDULES, "precision": PRECISIONS},
    helps={
        "max_tokens": "padded tokens per batch (source or target, whichever is longer; the global batch under DDP)",
        "max_steps": "stop after this many optimizer steps (counting a resumed run's)",
        "max_epochs": f"stop after this many epochs (default: {DEFAULT_EPOCHS} when no --max-steps / --max-minutes)",
        "max_time_minutes": "stop training after this much wall time, in minutes (of this call); the last "
                            "validation and the final test evaluation come after it (announced at the start, "
                            "timed at the end)",
        "lr_schedule": "noam = Eq. 3 (the paper); inverse_sqrt / linear / constant (options) warm up to --lr; "
                       "linear then decays to 0 after --max-steps",
        "warmup_steps": "warm-up steps (4000 in the paper)",
        "weight_decay": "weight decay (0 in the paper)",
        "label_smoothing": "label smoothing ε_ls (0.1 in the paper, §5.4)",
        "log_every_steps": "log every N steps",
        "progress": "no progress bar (there is one only when stderr is a terminal)",
        "adam_beta1": "Adam β1 (§5.3)", "adam_beta2": "Adam β2 (§5.3)", "adam_eps": "Adam ε (§5.3)",
        "fsdp": "fully sharded data parallel, under torchrun (NCCL on GPUs, gloo on CPUs)",
        "activation_checkpointing": "recompute activations in the backward pass (less memory)",
        "precision": "fp32 (the paper's numbers), bf16 autocast, or auto = bf16 on CUDA and on CPUs with "
                     "AVX512-BF16/AMX, else fp32 (weights and checkpoints stay fp32)",
    },
)  # fmt: skip


def add_precision_option(group, what: str = "training") -> None:
    """``--precision auto|fp32|bf16`` (decoding: also ``int8``) and its older spelling ``--bf16`` (= ``--precision
    bf16``). The default is fp32, the paper's numbers (and the outputs of earlier versions); ``auto`` is the fast
    choice."""
    decoding = what == "decoding"
    group.add_argument(
        "--precision", choices=DECODE_PRECISIONS if decoding else PRECISIONS, default="fp32",
        help=f"{what} precision: fp32 (default: the paper's numbers), bf16 autocast, or auto = bf16 on CUDA "
        "and on CPUs with AVX512-BF16/AMX, else fp32"
        + ("; int8 = the linear layers dynamically quantized to int8 (CPU)" if decoding else ""),
    )  # fmt: skip
    add_bf16_alias(group)


def add_bf16_alias(group) -> None:
    """``--bf16``, the older spelling of ``--precision bf16`` (for the commands whose ``--precision`` comes from
    a config field)."""
    group.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help="= --precision bf16")


def print_precision(precision: str, device) -> None:
    """Say on stderr what ``--precision`` became on ``device`` (``auto`` -> bf16 or fp32, and why); silent for
    the default fp32, so that plain commands print only their results."""
    if precision == "int8":
        print(f"precision int8 (asked for) on {device}: linear layers dynamically quantized", file=sys.stderr)
    elif precision != "fp32":
        print(describe_precision(precision, device), file=sys.stderr)


def add_train_options(p: argparse.ArgumentParser) -> None:
    """Options of :class:`qkv.train.config.TrainConfig` (paper defaults, §5), derived from its fields."""
    g = p.add_argument_group("training (§5 of the paper)")
    TRAIN_OPTIONS.add_to(g)
    add_bf16_alias(g)


def train_config_from_args(args: argparse.Namespace, **resolved: Any) -> TrainConfig:
    """The TrainConfig of ``args``: :data:`DEFAULT_EPOCHS` epochs when no limit is given, ``resolved`` on top."""
    limits = (args.epochs, args.max_steps, args.max_minutes)
    if all(v is None for v in limits) and "max_epochs" not in resolved:
        resolved["max_epochs"] = DEFAULT_EPOCHS
    return TRAIN_OPTIONS.build(args, **resolved)


def stdin_lines():
    """The lines of standard input, checked as :func:`qkv.data.text.read_stream` checks them (a text stream
    without a binary buffer, e.g. a test's ``StringIO``, is read as UTF-8)."""
    from qkv.data.text import read_stream

    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:
        buffer = (line.encode("utf-8", "surrogateescape") for line in sys.stdin)
    return read_stream(buffer)
