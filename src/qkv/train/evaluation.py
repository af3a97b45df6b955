"""Validation of a sequence-to-sequence model: the label-smoothed loss, NLL and perplexity on held-out pairs.

Legend: B batch, T target length, V vocabulary size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from qkv.data.batching import TokenBudgetSampler, collate
from qkv.nn.modes import eval_mode
from qkv.train.distributed import all_reduce_sum
from qkv.train.loss import label_smoothed_cross_entropy, perplexity
from qkv.train.precision import autocast

Pairs = Sequence[tuple[Sequence[int], Sequence[int]]]


def evaluate(
    model: nn.Module,
    data: Pairs,
    *,
    max_tokens: int = 4096,
    label_smoothing: float = 0.1,
    device: str | torch.device | None = None,
    pad_id: int = 0,
    bf16: bool = False,
    rank: int = 0,
    world_size: int = 1,
    lockstep: bool = False,
) -> dict[str, float]:
    """Validation loss of ``model`` on ``data`` (pairs of source/target ids without BOS/EOS).

    With ``world_size > 1`` (inside a process group) rank r evaluates batches r, r + world_size, … and the
    sums are reduced over ranks. Ranks may then run different numbers of batches: pass the unwrapped model
    (not DDP), or ``lockstep=True`` for an FSDP model, whose every forward is a collective: each rank then
    runs ``ceil(batches / world_size)`` forwards, re-running a batch without counting it when it has none left.

    Returns:
        ``{"loss": smoothed loss per token, "nll": NLL per token, "ppl": perplexity, "tokens": N}``.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    sampler = TokenBudgetSampler(
        [len(s) + 1 for s, _ in data], [len(t) + 1 for _, t in data], max_tokens, shuffle=False
    )
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss, nll, tokens
    batches = list(sampler)
    mine = batches[rank::world_size]
    runs = math.ceil(len(batches) / world_size) if lockstep else len(mine)
    with eval_mode(model, inference=False):
        for j in range(runs):
            counted = j < len(mine)
            batch = collate([data[i] for i in (mine[j] if counted else batches[0])], pad_id=pad_id).to(device)
            with autocast(device, bf16):
                logits = model(batch.src, batch.tgt_in)  # (B, T, V)
            loss, nll, n = label_smoothed_cross_entropy(logits, batch.tgt_out, label_smoothing, pad_id)
            if counted:
                totals += torch.stack([loss.double(), nll.double(), n.double()])
    if world_size > 1:
        all_reduce_sum(totals)
    loss_sum, nll_sum, tokens = totals.tolist()
    tokens = max(tokens, 1.0)
    return {
        "loss": loss_sum / tokens,
        "nll": nll_sum / tokens,
        "ppl": perplexity(nll_sum / tokens),
        "tokens": int(tokens),
    }
