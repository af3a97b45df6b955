"""Positional encodings, §3.5.

    PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))

The sinusoids are the paper's choice; learned position embeddings (which the paper found "nearly identical",
Table 3 row E) are the option. Legend: B batch, T length, D d_model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

LAYOUTS = ("interleaved", "half")


def sinusoidal_table(max_len: int, d_model: int, layout: str = "interleaved") -> Tensor:
    """The ``(max_len, d_model)`` matrix of §3.5, wavelengths 2π … 10000·2π.

    Args:
        layout: ``"interleaved"`` (the paper: even dims sin, odd dims cos) or ``"half"`` (a deviation, flagged:
            the same sines in the first ⌈D/2⌉ dims and the same cosines in the rest, ``[sin | cos]``; Marian /
            OPUS-MT and fairseq lay the table out this way). Both hold the same numbers, only permuted.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"sinusoidal layout must be one of {LAYOUTS}, got {layout!r}")
    position = torch.arange(max_len, dtype=torch.float64)[:, None]  # (T, 1)
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    sin, cos = torch.sin(position * div), torch.cos(position * div[: d_model // 2])  # (T, ⌈D/2⌉), (T, ⌊D/2⌋)
    table = torch.zeros(max_len, d_model, dtype=torch.float64)
    if layout == "half":
        table[:, : sin.shape[1]], table[:, sin.shape[1] :] = sin, cos
    else:
        table[:, 0::2], table[:, 1::2] = sin, cos
    return table.float()


class PositionalEncoding(nn.Module):
    """Adds position information to embeddings: ``x + PE[offset : offset + T]``.

    Args:
        d_model: model dimension D.
        max_len: the most positions this model knows; a longer input is an error, not a silent wrap.
        kind: ``"sinusoidal"`` (§3.5, fixed) or ``"learned"`` (an ``nn.Embedding`` of positions).
        layout: how the sinusoids are laid out, ``"interleaved"`` (paper) or ``"half"`` (Marian; a flagged
            deviation, see :func:`sinusoidal_table`). Ignored for ``"learned"``.

    Shape:
        ``(B, T, D) -> (B, T, D)``; ``offset`` is the position of the first row (incremental decoding).
    """

    def __init__(self, d_model: int, max_len: int, kind: str = "sinusoidal", layout: str = "interleaved") -> None:
        super().__init__()
        if kind not in ("sinusoidal", "learned"):
            raise ValueError(f"positional encoding kind must be 'sinusoidal' or 'learned', got {kind!r}")
        self.kind = kind
        self.max_len = max_len
        if kind == "sinusoidal":
            self.register_buffer("table", sinusoidal_table(max_len, d_model, layout), persistent=False)
        else:
            self.embedding = nn.Embedding(max_len, d_model)
            nn.init.normal_(self.embedding.weight, std=0.02)

    def encodings(self, length: int, offset: int = 0) -> Tensor:
        """The ``(length, D)`` encodings of positions ``offset … offset + length - 1``."""
        if offset + length > self.max_len:
            raise ValueError(
                f"position {offset + length - 1} is past the maximum of this model (max_len={self.max_len}); "
                f"shorten the input or build the model with a larger max_len"
            )
        if self.kind == "sinusoidal":
            return self.table[offset : offset + length]
        return self.embedding.weight[offset : offset + length]

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        return x + self.encodings(x.shape[1], offset).to(x.dtype)  # (B, T, D) + (T, D)
