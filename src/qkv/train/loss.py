"""Label-smoothed cross-entropy, §5.4: "we employed label smoothing of value ε_ls = 0.1. This hurts
perplexity, as the model learns to be more unsure, but improves accuracy and BLEU score."

Legend: B batch, T target length, V vocabulary size, N non-pad target tokens.

For one target token y with model distribution p over V classes:

    loss = (1 − ε) · (−log p_y) + ε · (1/V) Σ_v (−log p_v)

i.e. cross-entropy against the target smoothed to (1 − ε)·onehot(y) + ε/V (uniform over *all* V classes,
padding included). This is exactly what ``torch.nn.functional.cross_entropy(label_smoothing=ε)`` computes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def label_smoothed_cross_entropy(
    logits: Tensor, target: Tensor, epsilon: float = 0.1, ignore_index: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Label-smoothed cross-entropy summed over the non-pad tokens (§5.4).

    Matches ``F.cross_entropy(logits, target, label_smoothing=epsilon, ignore_index=ignore_index,
    reduction="sum")``; computed in float32 whatever the logits' dtype (bf16 autocast).

    Args:
        logits: ``(B, T, V)`` (or ``(N, V)``) unnormalized scores.
        target: ``(B, T)`` (or ``(N,)``) token ids; positions equal to ``ignore_index`` are ignored.
        epsilon: smoothing ε (0.1 in the paper; 0 gives plain cross-entropy).
        ignore_index: the padding id.

    Returns:
        ``(loss_sum, nll_sum, n_tokens)``: the smoothed loss and the plain negative log-likelihood, both
        summed over the N non-pad tokens (0-dim float tensors; ``loss_sum`` carries the gradient), and N as a
        0-dim int64 tensor. Per-token loss is ``loss_sum / n_tokens``; perplexity is
        ``exp(nll_sum / n_tokens)``.

    Example:
        >>> logits, target = torch.randn(2, 5, 11), torch.randint(1, 11, (2, 5))
        >>> loss, nll, n = label_smoothed_cross_entropy(logits, target)
        >>> int(n)
        10
    """
    if logits.shape[:-1] != target.shape:
        raise ValueError(
            f"logits (..., V) and target (...) disagree: logits {tuple(logits.shape)}, "
            f"target {tuple(target.shape)}"
        )
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
    lprobs = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    keep = target != ignore_index  # (B, T)
    safe_target = target.masked_fill(~keep, 0)
    nll = -lprobs.gather(-1, safe_target.unsqueeze(-1)).squeeze(-1)  # (B, T)
    smooth = -lprobs.mean(dim=-1)  # (B, T): mean over the vocabulary of −log p_v
    loss = (1.0 - epsilon) * nll + epsilon * smooth
    zero = torch.zeros((), dtype=loss.dtype, device=loss.device)
    loss_sum = torch.where(keep, loss, zero).sum()
    nll_sum = torch.where(keep, nll, zero).sum()
    return loss_sum, nll_sum.detach(), keep.sum()


def perplexity(nll_per_token: float) -> float:
    """``exp`` of the per-token negative log-likelihood (capped to avoid overflow)."""
    return math.exp(min(nll_per_token, 100.0))
