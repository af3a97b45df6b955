"""Scaled dot-product attention (Eq. 1, §3.2.1) and multi-head attention (§3.2.2).

Legend: B batch, H heads, T_q query length, T_k key length, D d_model, Dh head dimension (d_k = d_v = D / H).

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V                                   (Eq. 1)
    MultiHead(Q, K, V) = Concat(head_1, …, head_h) W_O,
        head_i = Attention(Q W_Q_i, K W_K_i, V W_V_i)                               (§3.2.2)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.nn.dropout import dropout
from qkv.nn.masks import causal_mask, check_mask, combine_masks
from qkv.nn.packed import side_by_side

ATTENTIONS = ("soft", "hard")  # softmax weights (the paper) or one-hot weights (option)


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    *,
    is_causal: bool = False,
    need_weights: bool = True,
    rows_have_keys: bool = False,
    hard: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Scaled dot-product attention, Eq. 1 of the paper.

    With ``need_weights=True`` (the default) it is written out step by step and returns the weights. With
    ``need_weights=False`` it calls :func:`torch.nn.functional.scaled_dot_product_attention`, which dispatches
    to fused FlashAttention / memory-efficient kernels on a GPU; both paths compute the same output. (In bf16 or
    fp16 on a CPU the written-out path is the faster one and is used, without returning weights: see
    :func:`fused_kernel_pays`.)

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
        rows_have_keys: the caller knows every query row may attend to at least one key (e.g. the cross-attention
            cache checked it once): the fused path then skips its guard for rows with no key.
        hard: hard attention (not the paper; flagged option): each query takes the value of its one
            highest-scoring allowed key, see :func:`hard_attention_weights`. Always the explicit path (the
            fused kernels only do softmax); with ``need_weights=False`` the weights are still not returned.

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
    fused = not need_weights and not hard and fused_kernel_pays(q)
    if is_causal:
        if mask is None and fused and t_q == t_k:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True), None
        mask = combine_masks(mask, causal_mask(t_q, t_k, device=q.device))

    if fused:
        if mask is None or rows_have_keys:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p), None
        # A row with no allowed key would be NaN in some kernels: let it attend everywhere, then zero it.
        row_has_key = mask.any(dim=-1, keepdim=True)  # (..., T_q, 1)
        safe = mask | ~row_has_key
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe, dropout_p=dropout_p)
        return out * row_has_key.to(out.dtype), None

    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1)  # (..., T_q, T_k) = Q·Kᵀ
    scores = scores / math.sqrt(d_k)  # scaled by 1/√d_k
    blocked = None if mask is None else ~mask
    if blocked is not None:
        # The most negative finite value of the dtype: exp(·) underflows to 0, works in fp16/bf16, no NaN.
        scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)  # (..., T_q, T_k), rows sum to 1; blocked keys get exactly 0 ...
    if blocked is not None and not rows_have_keys and (need_weights or _some_row_has_no_key(mask)):
        # ... except in a row with no allowed key (uniform over them): it becomes all zeros. (Without weights,
        # i.e. the CPU bf16 path, one check of the small mask replaces a pass over the weights.)
        weights = weights.masked_fill(blocked, 0.0)
    if hard:
        weights = hard_attention_weights(weights)  # one-hot forward, softmax gradient backward
    dropped = dropout(weights, dropout_p)  # the weights themselves when dropout_p is 0
    out = dropped @ v  # (..., T_q, d_v) = weights·V
    return out, weights if need_weights else None


def _some_row_has_no_key(mask: Tensor) -> bool:
    """Whether a query row of ``mask`` allows no key: a host check, so under ``torch.compile`` (where it would
    break the graph) the answer is "maybe" (True) and the zeroing pass always runs."""
    if torch.compiler.is_compiling():
        return True
    return not bool(mask.any(dim=-1).all())


def fused_kernel_pays(q: Tensor) -> bool:
    """Whether :func:`torch.nn.functional.scaled_dot_product_attention` is the faster way to compute Eq. 1 for
    queries like ``q``: everywhere except in bf16/fp16 on a CPU, where PyTorch's fused CPU kernel is several
    times slower than the two matrix products and the softmax written out (measured with torch 2.13 on an
    AVX512-BF16 Xeon, B=48, H=4, T=32, Dh=64, forward + backward: 3–9 ms explicit vs 16–70 ms fused; see
    docs/performance.md). Both compute the same function; only the kernel differs."""
    return q.device.type != "cpu" or q.dtype == torch.float32 or q.dtype == torch.float64


def decodes_in_fp32(x: Tensor) -> bool:
    """Whether incremental decoding with activations like ``x`` computes Eq. 1 in fp32: in bf16/fp16 on a CPU.

    A decoding step multiplies one new query per sentence with its cached keys and values: many tiny matrix
    products, which PyTorch's CPU kernels run about twice as fast in fp32 as in bf16 (64 sentences, 4 heads,
    10 keys: 137 µs vs 274 µs, 2 threads, torch 2.13; docs/performance.md, session 10). So a bf16 decoding
    copy projects Q, K, V in bf16 (the large products), keeps the cache in fp32 and casts the attention output
    back to bf16 before W_O. The same function, computed more precisely; training (no cache) is unaffected.
    """
    return x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16)


def hard_attention_weights(soft: Tensor) -> Tensor:
    """Hard attention from the softmax weights: one-hot at each row's largest weight, straight-through gradient.

    Not in the paper (its attention is soft, a distribution over every key); the hard attention of the notes
    (Xu et al. 2015). The argmax is not differentiable, so training uses the **straight-through estimator**
    (Bengio et al. 2013): the forward pass uses the one-hot weights, the backward pass the gradient of the
    softmax, as if the weights had been soft (``one_hot + soft - soft.detach()``; no Gumbel noise, no sampling:
    deterministic, the same at training and inference). A masked key has soft weight 0 and is never chosen;
    a row with no allowed key (all zeros) stays all zeros. Ties go to the first key.

    Args:
        soft: the softmax weights ``(..., T_q, T_k)``, zero on masked keys.

    Returns:
        ``(..., T_q, T_k)`` one-hot rows (or zero rows), carrying the softmax's gradient when ``soft`` has one.

    Example:
        >>> hard_attention_weights(torch.tensor([[0.2, 0.5, 0.3], [0.0, 0.0, 0.0]]))
        tensor([[0., 1., 0.],
                [0., 0., 0.]])
    """
    index = soft.argmax(dim=-1, keepdim=True)  # (..., T_q, 1)
    row_has_key = soft.amax(dim=-1, keepdim=True) > 0  # (..., T_q, 1): False for fully masked rows
    one_hot = torch.zeros_like(soft).scatter_(-1, index, 1.0) * row_has_key.to(soft.dtype)
    if not soft.requires_grad:
        return one_hot
    return one_hot + (soft - soft.detach())  # value: exactly one_hot; gradient: the softmax's


@dataclass
class KVCache:
    """Keys and values already projected, kept between decoding steps (no module state: passed in and out).

    For self-attention ``k``/``v`` grow by the new positions each step (:meth:`append`); for cross-attention
    they are the projected encoder output, computed once (``static=True``). Shapes ``(B, H, T_past, Dh)``.

    The growing keys/values live in buffers with room for more positions (the capacity doubles when full), and
    ``k``/``v`` are views of their first ``length`` positions: a step writes one position instead of copying
    the whole cache as ``torch.cat`` would. (For decoding: nothing backpropagates through these in-place writes.)

    A static cache may hold fewer rows than the queries: ``group`` consecutive query rows then share one
    key/value row (beam search: the K beams of a sentence attend to the same source, so its keys and values
    are projected and stored once, not K times).
    """

    k: Tensor | None = None
    v: Tensor | None = None
    static: bool = False
    group: int = 1
    rows_have_keys: bool = False  # static: every query row has a key it may attend to (checked once)
    _buffers: tuple[Tensor, Tensor] | None = field(default=None, repr=False)  # (B, H, capacity, Dh) each
    #: self-attention: W_Q, W_K, W_V side by side (and their biases) as one map, made once per decoding
    qkv_proj: Callable[[Tensor], Tensor] | None = field(default=None, repr=False)

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add new keys/values ``(B, H, T_new, Dh)`` after the cached ones; return all of them ``(B, H, T, Dh)``."""
        old, new = self.length, k.shape[2]
        if self._buffers is None or old + new > self._buffers[0].shape[2]:
            capacity = max(16, 2 * (old + new))
            grown = tuple(x.new_empty(x.shape[0], x.shape[1], capacity, x.shape[3]) for x in (k, v))
            if old:
                grown[0][:, :, :old] = self.k
                grown[1][:, :, :old] = self.v
            self._buffers = grown
        buf_k, buf_v = self._buffers
        buf_k[:, :, old : old + new] = k
        buf_v[:, :, old : old + new] = v
        self.k, self.v = buf_k[:, :, : old + new], buf_v[:, :, : old + new]  # views, (B, H, T_past + T_new, Dh)
        return self.k, self.v

    def reorder(self, index: Tensor) -> None:
        """Select batch rows (beam search): ``index`` is ``(B_new,)`` into the current (query) batch.

        A grouped cache keeps one row per group: ``index`` must keep groups together (rows ``g·i … g·i + g - 1``
        all come from one group), and the group of each new block of ``g`` rows is selected.
        """
        if self.k is None:
            return
        if self.group > 1:
            if index.shape[0] % self.group:
                raise ValueError(
                    f"a cache grouped by {self.group} query rows can only keep whole groups, got {index.shape[0]} rows"
                )
            index = index[:: self.group] // self.group  # (B_new / g,): the group of each block of rows
        if self._buffers is None:
            self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)
            return
        length = self.length
        if torch.is_grad_enabled() and self._buffers[0].requires_grad:  # out= has no autograd: copy it all
            self._buffers = tuple(buf.index_select(0, index) for buf in self._buffers)
        else:  # copy the filled positions only, not the buffer's spare room
            grown = tuple(buf.new_empty(index.shape[0], *buf.shape[1:]) for buf in self._buffers)
            for old, new in zip(self._buffers, grown):
                torch.index_select(old[:, :, :length], 0, index, out=new[:, :, :length])
            self._buffers = grown
        self.k, self.v = (buf[:, :, :length] for buf in self._buffers)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, §3.2.2: h heads of Eq. 1 on learned projections, concatenated, projected by W_O.

    Args:
        d_model: model dimension D.
        n_heads: number of heads H; ``d_model`` must be divisible by it (d_k = d_v = D / H).
        dropout: dropout on the attention weights.
        bias: whether the projections have biases.
        attention: ``"soft"`` (the paper: softmax weights) or ``"hard"`` (flagged deviation: one-hot weights on
            each query's best key, trained with the straight-through estimator; see
            :func:`hard_attention_weights`).

    Shape:
        - query ``(B, T_q, D)``, key and value ``(B, T_k, D)``, batch first (key/value may hold B / g rows:
          grouped queries, see :meth:`forward`).
        - mask: bool broadcastable to ``(B, H, T_q, T_k)``, ``True`` = may attend.
        - output ``(B, T_q, D)``; weights ``(B, H, T_q, T_k)`` when ``need_weights`` else ``None``.

    Example:
        >>> mha = MultiHeadAttention(d_model=16, n_heads=4)
        >>> x = torch.randn(2, 5, 16)
        >>> out, w = mha(x, x, x, need_weights=True)
        >>> out.shape, w.shape
        (torch.Size([2, 5, 16]), torch.Size([2, 4, 5, 5]))
    """

    def __init__(
        self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True, attention: str = "soft"
    ) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        self.attention = attention
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

    def _project_qkv(
        self, query: Tensor, key: Tensor, value: Tensor, fuse: bool, cache: KVCache | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        if fuse and query is key and key is value and isinstance(self.q_proj, nn.Linear):  # (not int8 copies)
            # Self-attention: one matmul for W_Q, W_K, W_V together (same maths, one kernel instead of three).
            # When decoding step by step the (3D, D) weight is concatenated once, at the first step, and kept
            # in the cache: a copy every step would cost more than the matmul of a few rows it fuses.
            # (Packed again for oneDNN when a decoding copy's layers are: qkv.nn.packed.)
            projections = (self.q_proj, self.k_proj, self.v_proj)
            if cache is None:
                return side_by_side(projections, pack=False)(query).chunk(3, dim=-1)  # 3 × (B, T, D)
            if cache.qkv_proj is None:
                cache.qkv_proj = side_by_side(projections)
            return cache.qkv_proj(query).chunk(3, dim=-1)  # 3 × (B, T, D)
        if key is value and query is not key and isinstance(self.k_proj, nn.Linear):  # (not int8 copies)
            # Cross-attention: W_K and W_V read the same memory: one matmul (and one bf16 cast of it) for both.
            k, v = side_by_side((self.k_proj, self.v_proj), pack=False)(key).chunk(2, dim=-1)  # 2 × (B, T_k, D)
            return self.q_proj(query), k, v
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

        Grouped queries: ``key``/``value`` (or a static cache) may hold ``B_kv`` rows for ``B_q = g·B_kv``
        query rows; query rows ``g·i … g·i + g - 1`` then attend to key/value row ``i`` (beam search's beams
        of one sentence share its encoder output). The mask must then be a key mask ``(B_kv or 1, 1, 1, T_k)``.
        """
        if query.dim() != 3 or query.shape[-1] != self.d_model:
            raise ValueError(f"query must be (B, T_q, {self.d_model}), got {tuple(query.shape)}")
        if key.dim() != 3 or key.shape[-1] != self.d_model or key.shape != value.shape:
            raise ValueError(
                f"key and value must both be (B, T_k, {self.d_model}), got {tuple(key.shape)} and "
                f"{tuple(value.shape)}"
            )
        upcast = cache is not None and decodes_in_fp32(query)
        if cache is not None and cache.static and cache.k is not None:
            q = self.q_proj(query)  # (B_q, T_q, D); K, V come from the cache
            k, v = cache.k, cache.v
        else:
            q, k, v = self._project_qkv(query, key, value, fuse=cache is None or not cache.static, cache=cache)
            if upcast:  # the cache then holds fp32 keys/values
                k, v = k.float(), v.float()
            k, v = self._split_heads(k), self._split_heads(v)  # (B, H, T_k, Dh)
            if cache is not None and not cache.static:
                k, v = cache.append(k, v)  # (B, H, T_past + T_q, Dh)
            elif cache is not None:
                cache.k, cache.v = k, v
                # the source mask is the same at every step: check it once (one host sync)
                cache.rows_have_keys = mask is None or bool(mask.any(dim=-1).all())

        if upcast:
            q = q.float()
        b_q, t_q = query.shape[0], query.shape[1]
        group = self._group(b_q, k.shape[0], mask, is_causal)
        if cache is not None and cache.static:
            cache.group = group
        # Grouped: the g query rows sharing a key/value row become g·T_q queries of that row (the same maths:
        # every query attends independently). Ungrouped, g = 1 and this is the usual head split.
        q = self._split_heads(q.reshape(b_q // group, group * t_q, self.d_model))  # (B_kv, H, g·T_q, Dh)

        if is_causal and t_q == 1:
            is_causal = False  # one new query at the end of the sequence sees every key: nothing to hide
        dropout_p = self.dropout if self.training else 0.0
        out, weights = scaled_dot_product_attention(
            q,
            k,
            v,
            mask,
            dropout_p,
            is_causal=is_causal,
            need_weights=need_weights,
            rows_have_keys=cache is not None and cache.rows_have_keys,
            hard=self.attention == "hard",
        )  # (B_kv, H, g·T_q, Dh), (B_kv, H, g·T_q, T_k)
        out = out.transpose(1, 2).reshape(b_q, t_q, self.d_model)  # (B_kv, H, g·T_q, Dh) -> (B_q, T_q, D): Concat
        if upcast:
            out = out.to(query.dtype)  # back to bf16 after the fp32 Eq. 1
        if weights is not None and group > 1:
            b_kv, h, _, t_k = weights.shape
            weights = weights.view(b_kv, h, group, t_q, t_k).transpose(1, 2).reshape(b_q, h, t_q, t_k)
        return self.out_proj(out), weights  # · W_O

    @staticmethod
    def _group(b_q: int, b_kv: int, mask: Tensor | None, is_causal: bool) -> int:
        """How many query rows share one key/value row: 1, or B_q / B_kv for grouped cross-attention."""
        if b_q == b_kv:
            return 1
        if b_kv == 0 or b_q % b_kv:
            raise ValueError(
                f"the key/value batch ({b_kv}) must equal the query batch ({b_q}) or divide it (grouped queries)"
            )
        if is_causal or (mask is not None and mask.dim() >= 2 and mask.shape[-2] != 1):
            raise ValueError(
                "grouped queries (key/value batch smaller than the query batch) take a key mask only "
                f"(shape (B_kv, 1, 1, T_k)) and no causal mask; got mask shape "
                f"{None if mask is None else tuple(mask.shape)}, is_causal={is_causal}"
            )
        return b_q // b_kv
