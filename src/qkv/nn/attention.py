"""Scaled dot-product attention (Eq. 1, §3.2.1) and multi-head attention (§3.2.2).

Legend: B batch, H heads, T_q query length, T_k key length, D d_model, Dh head dimension (d_k = d_v = D / H).

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V                                   (Eq. 1)
    MultiHead(Q, K, V) = Concat(head_1, …, head_h) W_O,
        head_i = Attention(Q W_Q_i, K W_K_i, V W_V_i)                               (§3.2.2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.nn.masks import causal_mask, check_mask, combine_masks


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    *,
    is_causal: bool = False,
    need_weights: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Scaled dot-product attention, Eq. 1 of the paper.

    With ``need_weights=True`` (the default) it is written out step by step and returns the weights. With
    ``need_weights=False`` it calls :func:`torch.nn.functional.scaled_dot_product_attention`, which dispatches
    to fused FlashAttention / memory-efficient kernels on a GPU; both paths compute the same output.

    A query whose mask row allows no key gets an output of zeros and weights of zeros (never NaN), in any
    dtype: no ``-1e9`` fills.

    Args:
        q: queries ``(..., T_q, d_k)``.
        k: keys ``(..., T_k, d_k)``.
        v: values ``(..., T_k, d_v)``.
        mask: bool, ``True`` = may attend, broadcastable to ``(..., T_q, T_k)``.
        dropout_p: dropout on the attention weights (pass 0.0 in eval mode).
        is_causal: also apply the causal mask (query i sees keys ≤ i, aligned bottom-right).
        need_weights: return the weights (explicit path) or ``None`` (fused path).

    Returns:
        ``(output (..., T_q, d_v), weights (..., T_q, T_k) or None)``. The weights are the softmax before
        dropout: the distribution the model computed.

    Example:
        >>> q = k = v = torch.randn(2, 4, 5, 8)
        >>> out, w = scaled_dot_product_attention(q, k, v)
        >>> out.shape, w.shape
        (torch.Size([2, 4, 5, 8]), torch.Size([2, 4, 5, 5]))
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k need the same last dim d_k, got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v need the same length T_k, got k {tuple(k.shape)} and v {tuple(v.shape)}")
    t_q, t_k = q.shape[-2], k.shape[-2]
    if mask is not None:
        check_mask(mask, tuple(q.shape[:-2]), t_q, t_k)
    if is_causal:
        if mask is None and not need_weights and t_q == t_k:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True), None
        mask = combine_masks(mask, causal_mask(t_q, t_k, device=q.device))

    if not need_weights:
        if mask is None:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p), None
        # A row with no allowed key would be NaN in some kernels: let it attend everywhere, then zero it.
        row_has_key = mask.any(dim=-1, keepdim=True)  # (..., T_q, 1)
        safe = mask | ~row_has_key
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe, dropout_p=dropout_p)
        return out * row_has_key.to(out.dtype), None

    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1)  # (..., T_q, T_k) = Q·Kᵀ
    scores = scores / math.sqrt(d_k)  # scaled by 1/√d_k
    if mask is not None:
        # The most negative finite value of the dtype: exp(·) underflows to 0, works in fp16/bf16, no NaN.
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)  # (..., T_q, T_k), rows sum to 1
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)  # a row with no allowed key becomes all zeros
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0.0 else weights
    out = dropped @ v  # (..., T_q, d_v) = weights·V
    return out, weights


@dataclass
class KVCache:
    """Keys and values already projected, kept between decoding steps (no module state: passed in and out).

    For self-attention ``k``/``v`` grow by the new positions each step; for cross-attention they are the
    projected encoder output, computed once (``static=True``). Shapes ``(B, H, T_past, Dh)``.
    """

    k: Tensor | None = None
    v: Tensor | None = None
    static: bool = False

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def reorder(self, index: Tensor) -> None:
        """Select batch rows (beam search): ``index`` is ``(B_new,)`` into the current batch."""
        if self.k is not None:
            self.k = self.k.index_select(0, index)
            self.v = self.v.index_select(0, index)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, §3.2.2: h heads of Eq. 1 on learned projections, concatenated, projected by W_O.

    Args:
        d_model: model dimension D.
        n_heads: number of heads H; ``d_model`` must be divisible by it (d_k = d_v = D / H).
        dropout: dropout on the attention weights.
        bias: whether the projections have biases.

    Shape:
        - query ``(B, T_q, D)``, key and value ``(B, T_k, D)``, batch first.
        - mask: bool broadcastable to ``(B, H, T_q, T_k)``, ``True`` = may attend.
        - output ``(B, T_q, D)``; weights ``(B, H, T_q, T_k)`` when ``need_weights`` else ``None``.

    Example:
        >>> mha = MultiHeadAttention(d_model=16, n_heads=4)
        >>> x = torch.randn(2, 5, 16)
        >>> out, w = mha(x, x, x, need_weights=True)
        >>> out.shape, w.shape
        (torch.Size([2, 5, 16]), torch.Size([2, 4, 5, 5]))
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)  # W_Q, all heads side by side
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)  # W_K
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)  # W_V
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W_O
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(proj.weight)
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)

    def _split_heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.d_head).transpose(1, 2)  # (B, T, D) -> (B, H, T, Dh)

    def _project_qkv(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if query is key and key is value:
            # Self-attention: one matmul for W_Q, W_K, W_V together (same maths, one kernel instead of three).
            w = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])  # (3D, D)
            b = None
            if self.q_proj.bias is not None:
                b = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
            return F.linear(query, w, b).chunk(3, dim=-1)  # 3 × (B, T, D)
        return self.q_proj(query), self.k_proj(key), self.v_proj(value)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        need_weights: bool = False,
        *,
        is_causal: bool = False,
        cache: KVCache | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query, key, value: ``(B, T_q, D)``, ``(B, T_k, D)``, ``(B, T_k, D)``.
            mask: bool, True = may attend, broadcastable to ``(B, H, T_q, T_k_total)`` where
                ``T_k_total`` includes cached keys.
            need_weights: return per-head weights ``(B, H, T_q, T_k)``.
            is_causal: add the causal mask (decoder self-attention), aligned so that with a cache the new
                queries see every cached key.
            cache: incremental decoding. Self-attention: the new keys/values are appended to the cache.
                Cross-attention (``cache.static``): keys/values are projected once from ``key``/``value``
                and reused on later calls.
        """
        if query.dim() != 3 or query.shape[-1] != self.d_model:
            raise ValueError(f"query must be (B, T_q, {self.d_model}), got {tuple(query.shape)}")
        if key.dim() != 3 or key.shape[-1] != self.d_model or key.shape != value.shape:
            raise ValueError(
                f"key and value must both be (B, T_k, {self.d_model}), got {tuple(key.shape)} and "
                f"{tuple(value.shape)}"
            )
        if cache is not None and cache.static and cache.k is not None:
            q = self._split_heads(self.q_proj(query))  # (B, H, T_q, Dh); K, V come from the cache
            k, v = cache.k, cache.v
        else:
            q, k, v = self._project_qkv(query, key, value)
            q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)  # (B, H, T, Dh)
            if cache is not None:
                if not cache.static and cache.k is not None:
                    k = torch.cat([cache.k, k], dim=2)  # (B, H, T_past + T_q, Dh)
                    v = torch.cat([cache.v, v], dim=2)
                cache.k, cache.v = k, v

        if is_causal and q.shape[2] == 1:
            is_causal = False  # one new query at the end of the sequence sees every key: nothing to hide
        dropout_p = self.dropout if self.training else 0.0
        out, weights = scaled_dot_product_attention(
            q, k, v, mask, dropout_p, is_causal=is_causal, need_weights=need_weights
        )  # (B, H, T_q, Dh), (B, H, T_q, T_k)
        b, _, t_q, _ = out.shape
        out = out.transpose(1, 2).reshape(b, t_q, self.d_model)  # (B, H, T_q, Dh) -> (B, T_q, D): Concat
        return self.out_proj(out), weights  # · W_O
