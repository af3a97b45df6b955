"""Dropout (Srivastava et al. 2014), the regularizer of §5.4: "we apply dropout to the output of each sub-layer,
before it is added to the sub-layer input and normalized ... [and] to the sums of the embeddings and the
positional encodings".

    Dropout(x) = x · m / (1 − p),   m_i ~ Bernoulli(1 − p) independently;   the identity in eval mode.

Same semantics as ``torch.nn.Dropout``; only how the mask is drawn on a CPU differs. PyTorch's CPU dropout
draws one Bernoulli sample per element and, in bf16, goes through a float32 mask and extra passes: in a bf16
training step on a 2-core CPU its ``bernoulli_`` was the largest cost after the matrix products (issue 17,
16 % of the step; forward + backward of one bf16 ``(48, 32, 256)`` activation: 4.1 ms against 1.6 ms here
with 1 thread, 3.5 ms against 1.1 ms with 2, ``bench/step_parts.py``). Each random 64-bit word gives four
16-bit uniform integers
``r ∈ [−2¹⁵, 2¹⁵)`` and element i is dropped iff ``r_i < round(p·2¹⁶) − 2¹⁵``, so p is realised to within
2⁻¹⁷ (0.1 → 0.100006). The draws come from the default CPU generator, so ``torch.manual_seed`` (``--seed``)
repeats them exactly. On other devices, and under ``torch.compile`` (which fuses its own dropout), this is
``torch.nn.functional.dropout``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: resolution of the drop probability: p is rounded to a multiple of 1 / LEVELS.
LEVELS = 1 << 16


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``torch.nn.functional.dropout(x, p, training)``, with the CPU mask drawn 16 bits per element.

    Args:
        x: any tensor.
        p: the probability of zeroing an element, in [0, 1].
        training: apply dropout (False: return ``x`` itself).

    Shape:
        any; the output has ``x``'s shape and dtype.

    Example:
        >>> y = dropout(torch.ones(1000), 0.1)
        >>> sorted(set(y.tolist())) == [0.0, 1 / 0.9]
        True
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p == 1.0 or torch.compiler.is_compiling() or not x.is_floating_point():
        return F.dropout(x, p, training=True)
    return _CpuDropout.apply(x, p)


def keep_mask(shape: torch.Size, p: float, dtype: torch.dtype) -> Tensor:
    """The dropout mask m for ``shape``, in ``dtype``: 1 where kept, 0 where dropped (with probability p)."""
    n = shape.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None)  # uniform over all 64 bits
    r = words.view(torch.int16)[:n].view(shape)  # (*shape): four uniform 16-bit integers per word
    threshold = round(p * LEVELS) - LEVELS // 2  # r < threshold with probability round(p·2¹⁶) / 2¹⁶
    mask = torch.empty(shape, dtype=dtype)
    torch.ge(r, threshold, out=mask)  # 1.0 where kept, 0.0 where dropped: written straight in ``dtype``
    return mask  # (several times faster than torch.where or a bool mask's cast)


class _CpuDropout(torch.autograd.Function):
    """y = x · m / (1 − p) with m = :func:`keep_mask`; the gradient is g · m / (1 − p) (m saved in x's dtype,
    not x). Each is one ``addcmul`` pass (0 + c·x·m), not a scaling pass and a product."""

    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:
        mask = keep_mask(x.shape, p, x.dtype)
        ctx.save_for_backward(mask)
        ctx.scale = 1.0 / (1.0 - p)
        return torch.addcmul(x.new_zeros(()), x, mask, value=ctx.scale)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (mask,) = ctx.saved_tensors
        return torch.addcmul(grad.new_zeros(()), grad, mask, value=ctx.scale), None


class Dropout(nn.Dropout):
    """``torch.nn.Dropout`` drawing its CPU mask with :func:`dropout` (same semantics, faster in bf16).

    Args:
        p: the probability of zeroing an element (P_drop = 0.1 in the base model, §5.4).

    Shape:
        any -> the same.

    Example:
        >>> drop = Dropout(0.1).eval()
        >>> x = torch.randn(2, 3)
        >>> bool((drop(x) == x).all())
        True
    """

    def forward(self, x: Tensor) -> Tensor:
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)
