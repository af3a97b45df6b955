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
    logits: Tensor,
    target: Tensor,
    epsilon: float = 0.1,
    ignore_index: int = 0,
    *,
    grad_scale: float | Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Label-smoothed cross-entropy summed over the non-pad tokens (§5.4).

    Matches ``F.cross_entropy(logits, target, label_smoothing=epsilon, ignore_index=ignore_index,
    reduction="sum")``, value and gradient; computed in float32 whatever the logits' dtype (bf16 autocast),
    in one chunked pass that also computes the gradient (see :class:`_SmoothedCrossEntropy`).

    Args:
        logits: ``(B, T, V)`` (or ``(N, V)``) unnormalized scores.
        target: ``(B, T)`` (or ``(N,)``) token ids; positions equal to ``ignore_index`` are ignored.
        epsilon: smoothing ε (0.1 in the paper; 0 gives plain cross-entropy).
        ignore_index: the padding id.
        grad_scale: the factor the caller will multiply ``loss_sum`` by before ``backward()`` (``1 / N`` for
            the per-token mean, ``world_size / global_tokens`` in :class:`qkv.train.Trainer`). Only a speed
            hint, never a change of result: on a CPU the gradient is stored already multiplied by it, so the
            backward pass of ``loss_sum * grad_scale`` skips a pass over the ``(N, V)`` gradient; any other
            factor is still applied exactly. Ignored elsewhere (a GPU multiplies at no cost worth saving),
            under ``torch.compile`` and when it is 0 or not finite.

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
    flat_logits = logits.reshape(-1, logits.shape[-1])  # (N_all, V)
    flat_target = target.reshape(-1)  # (N_all,)
    keep = flat_target != ignore_index  # (N_all,): the non-pad positions
    want_grad = torch.is_grad_enabled() and logits.requires_grad
    scale = None
    if want_grad and grad_scale is not None and logits.device.type == "cpu" and not torch.compiler.is_compiling():
        scale = torch.as_tensor(grad_scale, dtype=torch.float32, device=logits.device)  # 0-dim
        if not bool(torch.isfinite(scale) & (scale != 0)):
            scale = None  # (p − ε/V)·0 or ·inf could not be undone exactly: the plain path
    loss_sum, nll_sum = _SmoothedCrossEntropy.apply(flat_logits, flat_target, keep, epsilon, want_grad, scale)
    return loss_sum, nll_sum, keep.sum()


#: fp32 elements of logits processed at once: a chunk's temporaries stay in the CPU cache instead of making
#: several passes over the full (N, V) tensor in memory (32 rows of an 8,000-word vocabulary, 1 MB) ...
CHUNK_ELEMENTS = 1 << 18
#: ... in at most this many chunks: every chunk is a few parallel regions, and on a CPU whose cores are busy
#: with other work each region can wait a scheduler time slice for a descheduled thread.
MAX_CHUNKS = 64
#: on a GPU, whose kernels stream through memory anyway, chunks only add launches: one chunk up to this many
#: elements (512 MB of fp32 temporaries; 8,192 target tokens of a 10,000-word vocabulary are 82 M)
DEVICE_CHUNK_ELEMENTS = 1 << 27


def chunk_rows(n: int, v: int, device_type: str) -> int:
    """Rows of the (N, V) logits that :class:`_SmoothedCrossEntropy` processes at once.

    On a CPU a chunk that stays in cache (at most :data:`MAX_CHUNKS` of them); elsewhere one chunk of up to
    :data:`DEVICE_CHUNK_ELEMENTS`: on an H200, 64 chunks of 128 rows made qkv's bf16 training step 1.7x slower
    (80.8 ms against 47.1 ms for base, 256 x 32 x 32, vocab 10,000; docs/performance.md, session 21).
    """
    if device_type == "cpu":
        return max(1, CHUNK_ELEMENTS // v, -(-n // MAX_CHUNKS))
    return max(1, DEVICE_CHUNK_ELEMENTS // v)


class _SmoothedCrossEntropy(torch.autograd.Function):
    """One pass over the logits, chunk by chunk in fp32, for the loss *and* its gradient.

    For one token with logits z, target y and log-probabilities log p = log_softmax(z):

        loss_y = (1 − ε)·(−log p_y) + ε·mean_v(−log p_v)
        ∂loss/∂z_v = p_v − (1 − ε)·[v = y] − ε / V          (0 for a padding position)

    so the gradient is computed in the forward pass from the same chunk (no fp32 log-probabilities of the
    whole batch are kept for the backward pass) and stored in the logits' dtype, times ``scale`` if given;
    backward multiplies it by ``grad_loss / scale`` in place, or, when that is exactly 1 (the caller's
    announced scale; CPU only), returns it as it is: a multiplication over (N, V) was 3 % of a step.
    Per chunk, which stays in cache: a float32 copy, PyTorch's fused log_softmax, the mean, exp in place and
    one subtraction that writes the gradient. The unfused computation — a float32 copy, log_softmax, gather,
    mean and their backward passes, each over the full (N, V) tensor — was about a fifth of a bf16 CPU
    training step (issue 17; see docs/performance.md).
    """

    @staticmethod
    def forward(
        ctx, logits: Tensor, target: Tensor, keep: Tensor, epsilon: float, want_grad: bool, scale: Tensor | None
    ):
        n, v = logits.shape
        safe_target = target.masked_fill(~keep, 0).unsqueeze(-1)  # (N, 1)
        nll = torch.empty(n, dtype=torch.float32, device=logits.device)  # −log p_y
        smooth = torch.empty_like(nll)  # mean over the vocabulary of −log p_v
        grad = torch.empty_like(logits) if want_grad else None  # (N, V)
        rows = chunk_rows(n, v, logits.device.type)
        for i in range(0, n, rows):
            y = safe_target[i : i + rows]  # (n_c, 1)
            log_p = torch.log_softmax(logits[i : i + rows], dim=-1, dtype=torch.float32)  # (n_c, V)
            nll[i : i + rows] = -log_p.gather(-1, y).squeeze(-1)
            smooth[i : i + rows] = -log_p.mean(dim=-1)
            if grad is not None:
                p = log_p.exp_()  # (n_c, V): softmax, in place
                p.scatter_add_(-1, y, p.new_full(y.shape, -(1.0 - epsilon)))  # the target's −(1 − ε), in fp32
                if scale is None:
                    torch.sub(p, epsilon / v, out=grad[i : i + rows])  # written in the logits' dtype
                else:  # (p − ε/V) · scale, still in cache
                    torch.mul(p.sub_(epsilon / v), scale, out=grad[i : i + rows])
        if grad is not None:  # padding rows get no gradient
            pad = ~keep
            if grad.device.type == "cpu" and not torch.compiler.is_compiling():
                grad.index_fill_(0, pad.nonzero().squeeze(-1), 0.0)  # only those rows: 15x less than a full pass
            else:  # no nonzero(): no wait for the device, no graph break
                grad.masked_fill_(pad.unsqueeze(-1), 0.0)
        zero = nll.new_zeros(())
        loss_sum = torch.where(keep, (1.0 - epsilon) * nll + epsilon * smooth, zero).sum()
        nll_sum = torch.where(keep, nll, zero).sum()
        ctx.mark_non_differentiable(nll_sum)
        if grad is not None:
            ctx.save_for_backward(grad)
            ctx.scale = scale
        return loss_sum, nll_sum

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_nll: Tensor):
        # Scaled in place (one pass less over (N, V)): the stored gradient can serve one backward pass only.
        if getattr(ctx, "used", False):
            raise RuntimeError("label_smoothed_cross_entropy supports one backward pass per forward pass")
        ctx.used = True
        (grad,) = ctx.saved_tensors
        factor = grad_loss if ctx.scale is None else grad_loss / ctx.scale
        if ctx.scale is not None and not torch.compiler.is_compiling() and bool(factor == 1.0):
            return grad, None, None, None, None, None  # already what the caller's scale asks for
        return grad.mul_(factor.to(grad.dtype)), None, None, None, None, None


def perplexity(nll_per_token: float) -> float:
    """``exp`` of the per-token negative log-likelihood (capped to avoid overflow)."""
    return math.exp(min(nll_per_token, 100.0))
