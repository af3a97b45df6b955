"""Exact resumption: which checkpoint a run continues from, what it must agree with, and the state it holds
besides the weights (optimizer, schedule, sampler position, step, best metric and every rank's RNG states)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from qkv.train.checkpoint import (
    CheckpointError,
    load_trainer_state,
    model_arch,
    model_config_dict,
    read_config,
    recover,
)
from qkv.train.distributed import all_gather_object
from qkv.train.rng import rng_state, seed_everything, set_rng_state

logger = logging.getLogger("qkv.train")


def resume_folder(resume: bool | str | Path | None, out_dir: Path | None, model: nn.Module) -> Path | None:
    """The checkpoint to continue from (``True``: ``out_dir/last``; a path: that one; else ``None``), checked
    to hold the same architecture and model config as ``model``."""
    if resume is False or resume is None:
        return None
    if resume is True:
        if out_dir is None:
            raise ValueError("resume=True needs out_dir (the checkpoint is out_dir/last)")
        folder = out_dir / "last"
    else:
        folder = Path(resume)
    recover(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no checkpoint to resume from at {folder}")
    saved = read_config(folder)
    arch, mine = model_arch(model), model_config_dict(model)
    if saved.get("arch", arch) != arch:
        raise CheckpointError(f"{folder}: checkpoint is a {saved.get('arch')!r} model, this is {arch!r}")
    if mine is not None and saved.get("model") is not None and saved["model"] != mine:
        diff = sorted(k for k in set(mine) | set(saved["model"]) if mine.get(k) != saved["model"].get(k))
        changes = ", ".join(f"{k}: {saved['model'].get(k)!r} -> {mine.get(k)!r}" for k in diff)
        raise CheckpointError(f"{folder / 'config.json'}: model config differs from the checkpoint's ({changes})")
    return folder


def trainer_state(trainer: Any, optimizer_state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything but the weights that resuming needs (``optimizer_state``: the full one under FSDP).

    Collective: every rank's RNG states are gathered.
    """
    rngs = all_gather_object(rng_state())
    return {
        "optimizer": trainer.optimizer.state_dict() if optimizer_state is None else optimizer_state,
        "scheduler": trainer.scheduler.state_dict(),
        "sampler": trainer.sampler.state_dict(),
        "step": trainer.step,
        "best": trainer.best,
        "rng": rngs,
    }


def restore(trainer: Any, folder: Path) -> tuple[int, float | None]:
    """Load what :func:`trainer_state` saved in ``folder`` into the trainer's optimizer, scheduler, sampler and
    RNGs; returns ``(step, best)``. The learning rate follows the trainer's (possibly changed) schedule."""
    state = load_trainer_state(folder)
    trainer.parallel.load_optimizer_state(trainer.optimizer, state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.sampler.load_state_dict(state["sampler"])
    step = int(state["step"])
    trainer.scheduler.last_epoch = step
    for group in trainer.optimizer.param_groups:
        group["lr"] = trainer.schedule(step + 1)
    env, rngs = trainer.env, state["rng"]
    if len(rngs) == env.world_size:
        set_rng_state(rngs[env.rank])
    else:
        logger.warning("resuming with %d ranks instead of %d: reseeding", env.world_size, len(rngs))
        seed_everything(trainer.config.seed + env.rank + 7919 * step)
    return step, state.get("best")
