"""Linear layers with their weights pre-packed once for oneDNN, for decoding on a CPU (fp32 or bf16).

A decoding step calls every linear layer on a few rows (one new token per sentence, ``B`` rows) with the same
weights as the step before. PyTorch's plain ``F.linear`` then re-does work that does not change:
- in bf16 it hands oneDNN a plain ``(D_out, D_in)`` weight, which oneDNN re-lays out into its blocked
  (AMX / AVX512-BF16) format on every call;
- in fp32 it calls the BLAS it was built with (MKL), whose kernels for so few rows are slow on some CPUs.

Packing each weight once (``torch.ops.mkldnn._reorder_linear_weight``, the op ``torch.compile``'s CPU freezing
pass uses) and calling ``torch.ops.mkldnn._linear_pointwise`` on it computed the output projection of the
trained small model (64 rows, 256 → 8,000), 2 threads, torch 2.13 (docs/performance.md):
- bf16: 255 µs instead of 549 µs on an AMX Xeon (session 10); 869 µs instead of 1,911 µs on an AMD EPYC
  with AVX512-BF16 and no AMX (session 12);
- fp32: 2,189 µs instead of 5,086 µs on that AMD EPYC (session 12).
Same arithmetic in the same dtype (bf16 products with fp32 accumulation; fp32 throughout): the outputs agree
up to the order of the sums.

The packed weight is an opaque oneDNN tensor: it cannot be saved, copied or moved. A model with packed layers
is a decoding copy (:func:`qkv.decode.quantize.decoding_copy`); the model it came from, and every
checkpoint, keep plain weights.

Legend: B rows (sentences, or sentences × beams), D_in / D_out the layer's sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: the weight dtypes oneDNN packs here
PACKED_DTYPES = (torch.float32, torch.bfloat16)


def packing_available(device: torch.device | str) -> bool:
    """Whether weights can be pre-packed here: a CPU with torch's oneDNN build and the two ops."""
    return (
        torch.device(device).type == "cpu"
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


class PackedLinear(nn.Linear):
    """An ``nn.Linear`` (fp32 or bf16) whose forward uses its weight pre-packed for oneDNN (CPU decoding only).

    A subclass, so the model's code sees an ``nn.Linear`` with ``weight`` and ``bias`` as before; only
    ``forward`` differs. Build it with :meth:`from_weight`.

    Args (of :meth:`from_weight`):
        weight: ``(D_out, D_in)``, float32 or bfloat16: the dtype it computes in (shared, not copied).
        bias: ``(D_out,)`` or ``None``.
        rows_hint: the usual number of rows per call, which oneDNN uses to choose the packing (any number of
            rows works).

    Shape:
        ``(*, D_in)`` -> ``(*, D_out)``, both in the layer's dtype. Input of another dtype, or with autograd on,
        takes the plain ``F.linear`` (the same numbers).

    Example:
        >>> lin = nn.Linear(8, 4).bfloat16()
        >>> packed = PackedLinear.from_weight(lin.weight, lin.bias)
        >>> x = torch.randn(2, 8).bfloat16()
        >>> with torch.inference_mode():
        ...     torch.equal(packed(x), lin(x))
        True
    """

    packed_weight: Tensor

    @classmethod
    def from_weight(cls, weight: Tensor, bias: Tensor | None = None, rows_hint: int = 64) -> PackedLinear:
        """A packed layer computing ``x Wᵀ + b`` (see the class)."""
        if not packing_available(weight.device):
            raise ValueError(f"packed linear layers need a CPU with oneDNN, got {weight.device}")
        if weight.dtype not in PACKED_DTYPES:
            raise ValueError(f"packed linear layers compute in float32 or bfloat16, got {weight.dtype}")
        d_out, d_in = weight.shape
        layer = cls(d_in, d_out, bias=bias is not None, device="meta")
        layer.weight = nn.Parameter(weight.detach(), requires_grad=False)
        if bias is not None:
            layer.bias = nn.Parameter(bias.detach().to(weight.dtype), requires_grad=False)
        layer.packed_weight = torch.ops.mkldnn._reorder_linear_weight(layer.weight, rows_hint)
        return layer.eval()

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != self.weight.dtype or torch.is_grad_enabled():
            return super().forward(x)  # not what it was packed for: the plain layer (same numbers)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")


def side_by_side(layers: Sequence[nn.Linear], pack: bool = True) -> Callable[[Tensor], Tensor]:
    """One linear map computing ``layers`` (same input size) at once: their outputs concatenated on the last dim.

    The weights are concatenated once, so a decoding loop can call the result at every step (W_Q, W_K, W_V of
    self-attention in one product). With ``pack`` and layers that are all :class:`PackedLinear`, it is packed
    again (worth it when called many times); else it is ``F.linear`` on the concatenated weight (autograd
    flows to the layers' weights).

    Shape:
        ``(*, D_in)`` -> ``(*, sum of the layers' D_out)``.
    """
    weight = torch.cat([layer.weight for layer in layers])  # (ΣD_out, D_in)
    bias = None if layers[0].bias is None else torch.cat([layer.bias for layer in layers])  # (ΣD_out,)
    if pack and all(isinstance(layer, PackedLinear) for layer in layers):
        return PackedLinear.from_weight(weight, bias)
    return partial(F.linear, weight=weight, bias=bias)


def pack_linear_layers(model: nn.Module, rows_hint: int = 64) -> nn.Module:
    """Replace every fp32/bf16 ``nn.Linear`` of ``model`` (in place) by a :class:`PackedLinear` of its dtype;
    returns ``model``.

    For a decoding copy on a CPU (see the module); a no-op where :func:`packing_available` is False.
    A weight shared by several layers (tied embeddings) is packed once per layer; the embedding keeps the
    plain weight. Forward hooks on a replaced layer move to its packed layer.
    """
    device = next(model.parameters()).device
    if not packing_available(device):
        return model
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child.weight.dtype in PACKED_DTYPES:
                packed = PackedLinear.from_weight(child.weight, child.bias, rows_hint)
                packed._forward_pre_hooks.update(child._forward_pre_hooks)  # hooks the copy had stay on it
                packed._forward_hooks.update(child._forward_hooks)
                setattr(parent, name, packed)
    return model
