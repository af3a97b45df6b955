"""Data-parallel training helpers: process group set-up from ``torchrun`` variables, DDP wrapping, reductions.

Under ``torchrun --nproc_per_node=N`` every process sees ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (plus
``MASTER_ADDR``/``MASTER_PORT``). :func:`init_distributed` joins the process group (NCCL on GPUs, gloo on
CPUs); outside torchrun everything here is a no-op for a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls) -> DistEnv:
        """Read ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (set by torchrun); defaults: one process."""
        try:
            world_size = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as err:
            raise ValueError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers: {err}") from err
        if not 0 <= rank < world_size:
            raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world_size}")
        return cls(rank, world_size, local_rank)


def init_distributed(device: str | torch.device | None = None) -> tuple[DistEnv, torch.device, bool]:
    """Join the process group if launched by torchrun, and pick this process's device.

    Args:
        device: ``None`` picks ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.

    Returns:
        ``(env, device, created)``; ``created`` is True when this call initialized the process group (the
        caller should then :func:`cleanup` it).
    """
    env = DistEnv.from_env()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # set_device needs an index: LOCAL_RANK or the current GPU
        device = torch.device("cuda", env.local_rank if env.distributed else torch.cuda.current_device())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    created = False
    if env.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)
        created = True
    return env, device, created


def cleanup(created: bool = True) -> None:
    """Leave the process group (when ``created``, i.e. when :func:`init_distributed` made it)."""
    if created and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(model: nn.Module, env: DistEnv, device: torch.device) -> nn.Module:
    """Wrap ``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` (identity for one process).

    DDP broadcasts rank 0's parameters at construction and averages gradients over ranks in ``backward``.
    """
    if not env.distributed:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def _multi_process() -> bool:
    """Whether a process group of more than one rank is active (else the helpers below are no-ops)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over all ranks, in place (no-op without a process group); returns it."""
    if _multi_process():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: Tensor) -> Tensor:
    """Maximum of ``tensor`` over all ranks, in place (no-op without a process group); returns it."""
    if _multi_process():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def all_gather_object(obj):
    """``[obj of rank 0, obj of rank 1, …]`` on every rank (``[obj]`` without a process group)."""
    if _multi_process():
        out = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (``obj`` itself without a process group)."""
    if _multi_process():
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]
    return obj


def barrier() -> None:
    if _multi_process():
        dist.barrier()
