"""One handle on the model being trained, in one process, under DDP, or sharded by FSDP.

The training step, validation and checkpoints call this handle and never ask which of the three it is:

=================  ==================  =========================  ===============================
                   one process         DDP (``torchrun``)         FSDP2 (``fsdp=True``)
=================  ==================  =========================  ===============================
forward            the model           the DDP wrapper            the model, sharded in place
gradients          local               averaged in ``backward``   reduce-scattered in ``backward``
``no_sync``        nothing             skip the all-reduce        nothing (FSDP2 reduces per layer)
grad norm          local               local (grads are equal)    a DTensor, made whole
validation         every batch         the model, own share       the model, in lockstep
checkpoint state   the model's         the model's                gathered onto rank 0
=================  ==================  =========================  ===============================
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from qkv.train import sharding
from qkv.train.distributed import DistEnv, wrap_ddp


class ParallelModel:
    """The model as trained: wrapped for DDP, sharded by FSDP, or as it is, and optionally compiled.

    Args:
        model: the model (moved to ``device`` already); activation checkpointing and FSDP modify it in place.
        env, device: this process's rank and device (:func:`qkv.train.distributed.init_distributed`).
        fsdp: shard parameters, gradients and optimizer state (FSDP2, torch >= 2.6; needs torchrun).
        activation_checkpointing: recompute each layer in the backward pass (:mod:`qkv.train.sharding`).
        compile: ``torch.compile`` the training forward (dynamic shapes).
    """

    def __init__(
        self,
        model: nn.Module,
        env: DistEnv,
        device: torch.device,
        *,
        fsdp: bool = False,
        activation_checkpointing: bool = False,
        compile: bool = False,
    ) -> None:
        self.module = model  # the plain model: its names, its config, decoding
        self.sharded = fsdp
        if activation_checkpointing:
            sharding.apply_activation_checkpointing(model)
        forward = sharding.wrap_fsdp(model) if fsdp else wrap_ddp(model, env, device)
        self._forward: nn.Module = torch.compile(forward, dynamic=True) if compile else forward
        self._ddp = forward if isinstance(forward, nn.parallel.DistributedDataParallel) else None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._forward(*args, **kwargs)

    def parameters(self):
        """The parameters the optimizer updates (under FSDP, this rank's shards)."""
        return self.module.parameters()

    def train(self) -> None:
        self._forward.train()

    def no_sync(self, last: bool) -> AbstractContextManager:
        """DDP: keep the gradients local for every micro-batch but the last one of a step."""
        return self._ddp.no_sync() if (self._ddp is not None and not last) else nullcontext()

    def clip_grad_norm(self, max_norm: float) -> Tensor:
        """Clip the global gradient norm to ``max_norm`` (``inf``: only measure it); returns the norm."""
        norm = nn.utils.clip_grad_norm_(self.module.parameters(), max_norm)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP2: a replicated DTensor

    def full_state(self, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor] | None, dict | None]:
        """Collective under FSDP: the full weights and optimizer state on rank 0; ``(None, None)`` otherwise
        (the checkpoint then reads the model and ``optimizer.state_dict()`` themselves)."""
        if not self.sharded:
            return None, None
        return sharding.gather_full_state(self.module, optimizer)

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Load a full optimizer state (collective under FSDP: each rank keeps its shards)."""
        if self.sharded:
            sharding.load_full_optimizer_state(self.module, optimizer, state)
        else:
            optimizer.load_state_dict(state)
