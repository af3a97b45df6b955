"""Decoding copies of a model for a CPU: fp32 or bf16 with pre-packed weights, or int8 linear layers.

int8 and bf16 are not in the paper (it decodes in fp32): a deviation in rounding only, for speed. Every copy is
for decoding: the model itself (and every checkpoint) stays fp32 with plain weights.

- ``"fp32"``: on a CPU with oneDNN, a copy whose linear layers are pre-packed for it (:mod:`qkv.nn.packed`:
  the same fp32 products, without the per-call costs of the plain layer); elsewhere the model itself.

- ``"int8"``: every ``nn.Linear`` (the attention projections W_Q, W_K, W_V, W_O, the two FFN matrices and
  the pre-softmax output projection) becomes a dynamically quantized one (``torch.ao`` ``quantize_dynamic``):
  weights int8 per output row, stored once; activations quantized to int8 on the fly, row scale from their
  range; products accumulated in int32 and returned in fp32. Embeddings, layer norms and the attention
  itself stay fp32. As CTranslate2's ``int8`` (its default CPU compute type).
- ``"bf16"``: the whole model cast to bf16 (weights stored once in bf16: no per-step casts, unlike autocast),
  its linear layers pre-packed for oneDNN on a CPU (:mod:`qkv.nn.packed`); the attention of each step
  runs in fp32 there (:func:`qkv.nn.attention.decodes_in_fp32`); the searches read its logits in fp32.

Legend: B batch, D d_model, V vocabulary size.

Example:
    >>> fast = decoding_copy(model, "int8")            # doctest: +SKIP
    >>> greedy_search(fast, src)                       # doctest: +SKIP
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from qkv.nn.packed import pack_linear_layers, packing_available

#: the precisions of a decoding copy below fp32
LOW_PRECISIONS = ("int8", "bf16")


@contextmanager
def _quantized_engine(name: str) -> Iterator[None]:
    """The ``torch.backends.quantized`` engine set while the weights are packed, then restored (the packed
    weights keep the kernels of the engine they were packed for)."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def int8_engine() -> str:
    """The quantized kernels to pack for: oneDNN where it is built in (it uses AMX / VNNI int8 units),
    else the default x86 / fbgemm / qnnpack ones."""
    engines = torch.backends.quantized.supported_engines
    for name in ("onednn", "x86", "fbgemm", "qnnpack"):
        if name in engines:
            return name
    raise ValueError(f"int8 decoding needs a quantized engine in torch; this build has {engines}")


def check_int8_device(device: str | torch.device) -> None:
    """Raise ``ValueError`` unless ``device`` is the CPU: torch's dynamic quantization has CPU kernels only."""
    if torch.device(device).type != "cpu":
        raise ValueError(f"precision int8 decodes on the CPU only (torch's dynamic quantization), got device {device}")


def quantize_linear(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers are int8 dynamically quantized (CPU only).

    Args:
        model: any module on the CPU (a :class:`qkv.Transformer`, an RNN baseline); it is not changed.

    Returns:
        The quantized copy, in eval mode. A weight tied to an embedding (the output projection, §3.4) is
        quantized in the copy's linear layer only: the embedding lookup stays fp32.

    Shape:
        Every linear layer keeps its shapes: ``(*, D_in)`` fp32 in, ``(*, D_out)`` fp32 out.

    Example:
        >>> q = quantize_linear(nn.Sequential(nn.Linear(8, 4)))
        >>> q(torch.randn(2, 8)).shape
        torch.Size([2, 4])
    """
    check_int8_device(next(model.parameters()).device)
    with warnings.catch_warnings(), _quantized_engine(int8_engine()):
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices, once per layer
        quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)
    return quantized.eval()


def to_bf16(model: nn.Module) -> nn.Module:
    """A bf16 copy of ``model`` (every floating-point parameter and buffer), in eval mode; ``model`` is not
    changed. On a CPU its linear layers are pre-packed for oneDNN (:mod:`qkv.nn.packed`): the copy is for
    decoding, not for saving.

    Example:
        >>> to_bf16(nn.Sequential(nn.Linear(8, 4)))[0].weight.dtype
        torch.bfloat16
    """
    return pack_linear_layers(copy.deepcopy(model).to(torch.bfloat16).eval())


def packed_fp32(model: nn.Module) -> nn.Module:
    """An fp32 copy of ``model`` with its linear layers pre-packed for oneDNN, in eval mode, on a CPU where
    that is available (:mod:`qkv.nn.packed`); else ``model`` itself. ``model`` is not changed.

    Example:
        >>> type(packed_fp32(nn.Sequential(nn.Linear(8, 4)))[0]).__name__  # on a CPU with oneDNN
        'PackedLinear'
    """
    if not packing_available(next(model.parameters()).device):
        return model
    return pack_linear_layers(copy.deepcopy(model).eval())


def weight_versions(model: nn.Module) -> tuple[int, ...]:
    """The version counters of ``model``'s parameters and buffers: they change with every in-place write (an
    optimizer step, ``load_state_dict``), so a decoding copy made from older weights can be told stale."""
    return tuple(t._version for t in (*model.parameters(), *model.buffers()))


def decoding_copy(model: nn.Module, precision: str) -> nn.Module:
    """The decoding copy of ``model`` in ``precision``: ``"fp32"``, ``"int8"`` or ``"bf16"`` (see the module).
    For fp32 off a CPU with oneDNN, ``model`` itself."""
    if precision == "fp32":
        return packed_fp32(model)
    if precision == "int8":
        return quantize_linear(model)
    if precision == "bf16":
        return to_bf16(model)
    raise ValueError(f"decoding precision must be fp32, {' or '.join(LOW_PRECISIONS)}, got {precision!r}")
