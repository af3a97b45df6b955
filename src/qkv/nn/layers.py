"""Encoder and decoder layers, §3.1 (Figure 1).

Each sublayer is wrapped in a residual connection and layer normalization. The paper applies the norm *after*
the residual add (post-LN, the default here):

    post-LN:  x = LayerNorm(x + Dropout(Sublayer(x)))          (§3.1, §5.4 "residual dropout")
    pre-LN:   x = x + Dropout(Sublayer(LayerNorm(x)))          (option, flagged: not the paper; Xiong et al. 2020)

Legend: B batch, S source length, T target length, D d_model, H heads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor, nn

from qkv.nn.attention import KVCache, MultiHeadAttention
from qkv.nn.dropout import Dropout
from qkv.nn.feedforward import PositionwiseFeedForward

NORMS = ("post", "pre")


class Residual(nn.Module):
    """``Sublayer`` wrapped in dropout + residual + LayerNorm, post-LN (paper) or pre-LN (option)."""

    def __init__(self, d_model: int, dropout: float, norm: str, eps: float) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.pre = norm == "pre"
        self.norm = nn.LayerNorm(d_model, eps=eps)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, sublayer: Callable[[Tensor], tuple[Tensor, Tensor | None]]):
        if self.pre:
            out, extra = sublayer(self.norm(x))
            return x + self.dropout(out), extra
        out, extra = sublayer(x)
        return self.norm(x + self.dropout(out)), extra


class EncoderLayer(nn.Module):
    """Self-attention then the position-wise FFN, each in a :class:`Residual` (§3.1).

    Args:
        d_model, n_heads, d_ff: sizes (512, 8, 2048 in the base model).
        dropout: residual dropout P_drop (§5.4).
        attention_dropout: dropout on attention weights (not in the paper; 0.0 by default).
        activation_dropout: dropout inside the FFN (not in the paper; 0.0 by default).
        activation: ``"relu"`` (paper), or the flagged options ``"gelu"``, ``"swish"``/``"silu"`` (see the FFN).
        norm: ``"post"`` (paper) or ``"pre"``.
        eps: LayerNorm epsilon.
        attention: ``"soft"`` (paper) or ``"hard"`` (option, see :class:`MultiHeadAttention`).

    Shape:
        x ``(B, S, D)``, mask bool broadcastable to ``(B, H, S, S)`` -> ``(B, S, D)``, weights ``(B, H, S, S)``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        activation: str = "relu",
        norm: str = "post",
        eps: float = 1e-5,
        attention: str = "soft",
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=attention_dropout, attention=attention)
        self.ffn = PositionwiseFeedForward(d_model, d_ff, activation, activation_dropout)
        self.attn_block = Residual(d_model, dropout, norm, eps)
        self.ffn_block = Residual(d_model, dropout, norm, eps)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        x, weights = self.attn_block(x, lambda h: self.self_attn(h, h, h, mask, need_weights))
        x, _ = self.ffn_block(x, lambda h: (self.ffn(h), None))
        return x, weights


@dataclass
class LayerCache:
    """The decoder layer's incremental-decoding state: its self-attention keys/values and cross K/V."""

    self_attn: KVCache = field(default_factory=KVCache)
    cross_attn: KVCache = field(default_factory=lambda: KVCache(static=True))

    def reorder(self, index: Tensor) -> None:
        self.self_attn.reorder(index)
        self.cross_attn.reorder(index)


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention to the encoder output, then the FFN (§3.1, Figure 1).

    The self-attention is causal: position i attends to positions ≤ i only (§3.2.3), so the prediction for
    position i depends only on the known outputs before it. Arguments as for :class:`EncoderLayer`.

    Shape:
        x ``(B, T, D)``, memory ``(B, S, D)``, memory_mask broadcastable to ``(B, H, T, S)``,
        self_mask (optional, e.g. target padding) broadcastable to ``(B, H, T, T)`` ->
        ``(B, T, D)``, self weights ``(B, H, T, T)``, cross weights ``(B, H, T, S)``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        activation: str = "relu",
        norm: str = "post",
        eps: float = 1e-5,
        attention: str = "soft",
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=attention_dropout, attention=attention)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout=attention_dropout, attention=attention)
        self.ffn = PositionwiseFeedForward(d_model, d_ff, activation, activation_dropout)
        self.self_block = Residual(d_model, dropout, norm, eps)
        self.cross_block = Residual(d_model, dropout, norm, eps)
        self.ffn_block = Residual(d_model, dropout, norm, eps)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None = None,
        self_mask: Tensor | None = None,
        need_weights: bool = False,
        cache: LayerCache | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        self_cache = cache.self_attn if cache is not None else None
        cross_cache = cache.cross_attn if cache is not None else None
        x, self_w = self.self_block(
            x, lambda h: self.self_attn(h, h, h, self_mask, need_weights, is_causal=True, cache=self_cache)
        )
        x, cross_w = self.cross_block(
            x, lambda h: self.cross_attn(h, memory, memory, memory_mask, need_weights, cache=cross_cache)
        )
        x, _ = self.ffn_block(x, lambda h: (self.ffn(h), None))
        return x, self_w, cross_w
