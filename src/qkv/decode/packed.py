"""bf16 linear layers with their weights pre-packed once for oneDNN, for decoding on a CPU.

A bf16 ``F.linear`` on a CPU hands oneDNN a plain ``(D_out, D_in)`` weight, which it re-lays out into its
blocked (AMX / AVX512-BF16) format on every call. In decoding every call is small (one new token per sentence,
``B`` rows) and the same weights come back every step, so that re-layout is a large part of the call: packing
each weight once (``torch.ops.mkldnn._reorder_linear_weight``, the op ``torch.compile``'s CPU freezing pass
uses) and calling ``torch.ops.mkldnn._linear_pointwise`` on it computed the output projection of the trained
small model (64 rows, 256 → 8,000) in 255 µs instead of 549 µs, 2 threads (docs/performance.md, session 10).
Same arithmetic (bf16 products, fp32 accumulation): the outputs agree up to the order of the sums.

The packed weight is an opaque oneDNN tensor: it cannot be saved, copied or moved. A model with packed layers
is a decoding copy (:func:`qkv.decode.quantize.to_bf16`); the model it came from, and every checkpoint, keep
plain weights.

Legend: B rows (sentences, or sentences × beams), D_in / D_out the layer's sizes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def packing_available(device: torch.device | str) -> bool:
    """Whether bf16 weights can be pre-packed here: a CPU with torch's oneDNN build and the two ops."""
    return (
        torch.device(device).type == "cpu"
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


class PackedLinear(nn.Linear):
    """An ``nn.Linear`` in bf16 whose forward uses its weight pre-packed for oneDNN (CPU decoding only).

    A subclass, so the model's code sees an ``nn.Linear`` with ``weight`` and ``bias`` as before (attention
    concatenates W_Q, W_K, W_V from them); only ``forward`` differs. Build it with :meth:`from_linear`.

    Args (of :meth:`from_linear`):
        linear: the layer to copy (any float dtype; it is not changed).
        rows_hint: the usual number of rows per call, which oneDNN uses to choose the packing (any number of
            rows works).

    Shape:
        ``(*, D_in)`` bf16 -> ``(*, D_out)`` bf16.

    Example:
        >>> lin = nn.Linear(8, 4)
        >>> packed = PackedLinear.from_linear(lin)
        >>> x = torch.randn(2, 8).bfloat16()
        >>> with torch.inference_mode():
        ...     torch.equal(packed(x), nn.functional.linear(x, lin.weight.bfloat16(), lin.bias.bfloat16()))
        True
    """

    packed_weight: Tensor

    @classmethod
    def from_linear(cls, linear: nn.Linear, rows_hint: int = 64) -> PackedLinear:
        if not packing_available(linear.weight.device):
            raise ValueError(f"packed bf16 linear layers need a CPU with oneDNN, got {linear.weight.device}")
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        layer.weight = nn.Parameter(linear.weight.detach().to(torch.bfloat16), requires_grad=False)
        if linear.bias is not None:
            layer.bias = nn.Parameter(linear.bias.detach().to(torch.bfloat16), requires_grad=False)
        layer.packed_weight = torch.ops.mkldnn._reorder_linear_weight(layer.weight, rows_hint)
        return layer.eval()

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != torch.bfloat16 or torch.is_grad_enabled():
            return super().forward(x)  # not what it was packed for: the plain layer (same numbers)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")


def pack_linear_layers(model: nn.Module, rows_hint: int = 64) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (in place) by a :class:`PackedLinear`; returns ``model``.

    For a bf16 decoding copy on a CPU (see the module); a no-op where :func:`packing_available` is False.
    A weight shared by several layers (tied embeddings) is packed once per layer; the embedding keeps the
    plain weight. Forward hooks on a replaced layer move to its packed layer.
    """
    device = next(model.parameters()).device
    if not packing_available(device):
        return model
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                packed = PackedLinear.from_linear(child, rows_hint)
                packed._forward_pre_hooks.update(child._forward_pre_hooks)  # hooks the copy had stay on it
                packed._forward_hooks.update(child._forward_hooks)
                setattr(parent, name, packed)
    return model
