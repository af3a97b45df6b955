"""`qkv train --resume`: what the command line may change in a saved run, and what it may not.

``--resume`` continues the run in ``--out`` with the options it was started with (``last/config.json`` holds
the model and training options, ``options.json`` the command's). An option present on the command line (found by
parsing it again without defaults) is, per key:

- **applied and said** (one log line ``resume: applying ...``): the limits (``--epochs``, ``--max-steps``,
  ``--max-minutes``), the schedule (``--lr-schedule``, ``--lr``, ``--lr-scale``, ``--warmup``),
  ``--label-smoothing``, ``--clip-norm``, ``--accum-steps``, ``--bf16``/``--precision``, the Adam
  options (``--adam-beta1/2``, ``--adam-eps``, ``--weight-decay``), ``--fsdp``,
  ``--activation-checkpointing``, ``--compile``, logging and checkpoint intervals, and ``--data`` (a moved
  corpus; its sizes are still checked by the sampler);
- **refused** (one line naming the differing keys): ``--arch``, ``--preset`` and ``--set`` keys that change
  the model config, ``--src``/``--tgt``, ``--vocab-size``/``--tokenizer``/``--separate-vocab`` (the tokenizer
  is the checkpoint's), ``--max-words``/``--skip-invalid`` (they change the training pairs), ``--seed`` and
  ``--max-tokens`` (the saved batch order and random streams would no longer be the run's).

An option not on the command line takes the saved run's value, so ``--resume --max-steps 400`` is all it
takes; giving one limit replaces all three (``--epochs``, ``--max-steps``, ``--max-minutes``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from qkv.train.config import TrainConfig

#: TrainConfig field -> the `qkv train` option (dest) that sets it; fields not here have no option.
TRAIN_OPTIONS = {
    "max_tokens": "max_tokens", "accum_steps": "accum_steps", "max_steps": "max_steps", "max_epochs": "epochs",
    "max_time_minutes": "max_minutes", "lr_schedule": "lr_schedule", "warmup_steps": "warmup", "lr": "lr",
    "lr_scale": "lr_scale", "label_smoothing": "label_smoothing", "clip_norm": "clip_norm", "seed": "seed",
    "eval_every_steps": "eval_every", "save_every_steps": "save_every",
    "keep_checkpoints": "keep_checkpoints", "log_every_steps": "log_every", "progress": "no_progress",
    "fsdp": "fsdp", "activation_checkpointing": "activation_checkpointing", "compile": "compile",
    "precision": "precision", "adam_beta1": "adam_beta1", "adam_beta2": "adam_beta2", "adam_eps": "adam_eps",
    "weight_decay": "weight_decay",
}
NOT_OPTIONS = ("bf16",)  # --bf16 sets --precision
LIMITS = ("max_steps", "max_epochs", "max_time_minutes")
#: TrainConfig fields a resumed run may not change (the sampler's batches and the saved RNG states).
REFUSED_TRAIN = ("seed", "max_tokens")
#: options.json options a resumed run may not change (model inputs and training pairs).
REFUSED_DATA = ("src", "tgt", "vocab_size", "tokenizer", "separate_vocab", "max_words", "skip_invalid")
#: options.json options a resumed run takes from the command line, said.
APPLIED_DATA = ("data",)


def explicit_options(args: argparse.Namespace, register: Callable) -> set[str] | None:
    """The options (dests) the command line of ``args`` gave, by parsing ``args.argv`` again with every
    default suppressed (``register`` adds the command's parser); ``None`` without ``args.argv``."""
    argv = getattr(args, "argv", None)
    if argv is None:
        return None
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register(sub)
    for command in sub.choices.values():
        for action in command._actions:  # argparse has no public way to list a parser's options
            action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv))) - {"command"}


def _diff(old: dict[str, Any], new: dict[str, Any], keys) -> list[str]:
    return [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def resumed_train_config(args, explicit: set[str], saved: dict[str, Any] | None,
                         fresh: Callable[[], TrainConfig]) -> tuple[TrainConfig, list[str], list[str]]:  # fmt: skip
    """The saved training options with the given ones applied (all three limits when one is given); returns
    ``(config, applied, refused)`` as ``"key old -> new"`` lines. ``fresh()``: the config of a new run."""
    if not saved:
        return fresh(), [], []
    changed = {f: getattr(args, d) for f, d in TRAIN_OPTIONS.items() if d in explicit}
    if "progress" in changed:
        changed["progress"] = not changed["progress"]
    if any(f in changed for f in LIMITS):
        changed.update({f: getattr(args, TRAIN_OPTIONS[f]) for f in LIMITS})
    refused = _diff(saved, changed, [k for k in REFUSED_TRAIN if k in changed])
    merged = {**{k: v for k, v in saved.items() if k in TRAIN_OPTIONS or k in NOT_OPTIONS}, **changed}
    applied = _diff(saved, merged, [k for k in changed if k not in REFUSED_TRAIN])
    return TrainConfig.from_dict(merged, where="--resume"), applied, refused


def refused_data(args, explicit: set[str], record: dict[str, Any] | None, tokenizers) -> tuple[list[str], list[str]]:
    """``(applied, refused)`` for the data and tokenizer options against the run's ``options.json`` record (and,
    for runs written before it, the checkpoint's tokenizers)."""
    options = (record or {}).get("options", {})
    mine = {k: getattr(args, k, None) for k in (*REFUSED_DATA, *APPLIED_DATA)}
    keys = [k for k in REFUSED_DATA if k in options and (k in ("src", "tgt") or k in explicit)]
    refused = _diff(options, mine, keys)
    if not options and tokenizers is not None:  # an older run: what its tokenizers tell
        if "separate_vocab" in explicit and args.separate_vocab == tokenizers.shared:
            refused.append(f"separate_vocab {not tokenizers.shared!r} -> {args.separate_vocab!r}")
        model = getattr(tokenizers.src, "model", None)
        if "tokenizer" in explicit and model is not None and args.tokenizer != model:
            refused.append(f"tokenizer {model!r} -> {args.tokenizer!r}")
    applied = _diff(options, mine, [k for k in APPLIED_DATA if k in options])
    return applied, refused


def refused_arch(args, explicit: set[str], saved: dict[str, Any]) -> list[str]:
    """``--arch`` against the saved run's architecture."""
    arch = saved.get("arch", "transformer")
    return [f"arch {arch!r} -> {args.arch!r}"] if "arch" in explicit and args.arch != arch else []


def refused_model(saved: dict[str, Any], candidate: dict[str, Any] | None) -> list[str]:
    """The model keys in which the config ``--preset``/``--set`` describe (``candidate``) differs from the
    saved run's."""
    old = saved.get("model") or {}
    return [] if candidate is None else _diff(old, candidate, sorted(set(old) | set(candidate)))


def refusal(refused: list[str]) -> str:
    return (f"--resume: options contradict the saved run ({'; '.join(refused)}): drop them to continue it, "
            "or --overwrite to start afresh")
