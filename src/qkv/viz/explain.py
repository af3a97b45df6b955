"""Attention by hand: one head of one encoder layer, every intermediate tensor, checked against the model.

For head h of layer l (§3.2.1–3.2.2, Eq. 1), with X the real input of that layer:

    Q = X W_Q^h,  K = X W_K^h,  V = X W_V^h                  (S, Dh)   this head's slice of the projections
    scores = Q Kᵀ                                              (S, S)
    scaled = scores / √d_k                                     (S, S)    d_k = Dh = D / H
    weights = softmax(scaled + mask)                           (S, S)    each row sums to 1
    head_h = weights V                                         (S, Dh)
    MultiHead(X) = Concat(head_1 … head_H) W_O                 (S, D)

X of layer 0 is the token embeddings ×√d_model plus the positional encodings (§3.4–3.5); with post-LN
(the paper) X of layer l > 0 is the output of layer l − 1, ``LayerNorm(h + FFN(h))``,
``h = LayerNorm(X + MHA(X))``.
With pre-LN (option) the attention reads ``LayerNorm(X)``. :func:`explain_head` recomputes all of this from
the weights and compares it with the model's own forward pass (:attr:`HeadWalkthrough.max_abs_diff`).

:func:`scaling_table` shows why the √d_k is there: for q, k with N(0, 1) entries, q·k has variance d_k, so
without scaling the softmax saturates (near one-hot, tiny gradients) as d_k grows.

Legend: S source length, D d_model, H heads, Dh head dimension.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from qkv.nn.attention import hard_attention_weights
from qkv.nn.layers import EncoderLayer


@dataclass
class HeadWalkthrough:
    """Every step of one head of one encoder layer for one sentence (batch of 1, batch dim dropped).

    Projection matrices are written as in the paper, acting on row vectors: ``Q = X @ w_q + b_q``.
    """

    tokens: list[str]
    layer: int
    head: int
    embeddings: Tensor | None  # (S, D) token embeddings × √d_model (layer 0 of a Transformer only)
    positions: Tensor | None  # (S, D) positional encodings (idem)
    x: Tensor  # (S, D) the layer's input, recomputed by hand
    x_model: Tensor  # (S, D) the layer's input as the model saw it (forward pre-hook)
    attn_input: Tensor  # (S, D) what the attention reads: x (post-LN) or LayerNorm(x) (pre-LN)
    w_q: Tensor  # (D, Dh)
    w_k: Tensor  # (D, Dh)
    w_v: Tensor  # (D, Dh)
    b_q: Tensor | None  # (Dh,)
    b_k: Tensor | None
    b_v: Tensor | None
    q: Tensor  # (S, Dh)
    k: Tensor  # (S, Dh)
    v: Tensor  # (S, Dh)
    scores: Tensor  # (S, S) Q·Kᵀ
    scaled: Tensor  # (S, S) Q·Kᵀ / √d_k
    mask: Tensor  # (S, S) bool, True = may attend
    weights: Tensor  # (S, S) softmax, rows sum to 1
    head_output: Tensor  # (S, Dh) weights·V
    heads: Tensor  # (S, D) Concat(head_1 … head_H), every head computed the same way
    w_o: Tensor  # (D, D)
    b_o: Tensor | None  # (D,)
    output: Tensor  # (S, D) MultiHead(X) = Concat · W_O + b_O
    layer_output: Tensor  # (S, D) the whole layer's output (residuals, LayerNorms, FFN) from `output`
    model_weights: Tensor  # (S, S) this head's weights from the model's forward pass
    model_output: Tensor  # (S, D) the attention sublayer's output from the module's forward
    model_layer_output: Tensor  # (S, D) the layer's output from its forward

    @property
    def d_k(self) -> int:
        return self.q.shape[-1]

    def differences(self) -> dict[str, float]:
        """Max abs difference of each hand-computed tensor from the model's own."""
        return {
            "layer input X": (self.x - self.x_model).abs().max().item(),
            "attention weights": (self.weights - self.model_weights).abs().max().item(),
            "MultiHead(X)": (self.output - self.model_output).abs().max().item(),
            "layer output": (self.layer_output - self.model_layer_output).abs().max().item(),
        }

    @property
    def max_abs_diff(self) -> float:
        return max(self.differences().values())


def _head_slice(linear: nn.Linear, head: int, d_head: int) -> tuple[Tensor, Tensor | None]:
    rows = slice(head * d_head, (head + 1) * d_head)
    weight = linear.weight[rows].T  # nn.Linear computes x Wᵀ: the paper's (D, Dh) matrix is this slice, transposed
    bias = linear.bias[rows] if linear.bias is not None else None
    return weight, bias


def attend_by_hand(x_q: Tensor, x_kv: Tensor, mha, head: int, mask: Tensor) -> dict[str, Tensor]:
    """Eq. 1 for one head, step by step: ``x_q`` (T_q, D) attends to ``x_kv`` (T_k, D) under ``mask`` (T_q, T_k).

    Self-attention passes the same X twice; cross-attention passes the decoder's X and the encoder output.
    Returns the head's slices of W_Q/W_K/W_V (and biases), q, k, v, scores = q·kᵀ, scaled = scores / √d_k,
    the softmax weights (a row with no allowed key: zeros, as in the library) and head_output = weights·v.
    """
    w_q, b_q = _head_slice(mha.q_proj, head, mha.d_head)
    w_k, b_k = _head_slice(mha.k_proj, head, mha.d_head)
    w_v, b_v = _head_slice(mha.v_proj, head, mha.d_head)
    q = x_q @ w_q + (b_q if b_q is not None else 0)  # (T_q, Dh)
    k = x_kv @ w_k + (b_k if b_k is not None else 0)  # (T_k, Dh)
    v = x_kv @ w_v + (b_v if b_v is not None else 0)  # (T_k, Dh)
    scores = q @ k.T  # (T_q, T_k)
    scaled = scores / math.sqrt(mha.d_head)
    weights = torch.softmax(scaled.masked_fill(~mask, float("-inf")), dim=-1)  # (T_q, T_k)
    weights = torch.nan_to_num(weights)  # a row with no allowed key: zeros, as in the library
    if mha.attention == "hard":  # hard attention (option): one-hot on each row's best key, as the model does
        weights = hard_attention_weights(weights)
    return dict(
        w_q=w_q,
        w_k=w_k,
        w_v=w_v,
        b_q=b_q,
        b_k=b_k,
        b_v=b_v,
        q=q,
        k=k,
        v=v,
        scores=scores,
        scaled=scaled,
        weights=weights,
        head_output=weights @ v,
    )


def multihead_by_hand(x_q: Tensor, x_kv: Tensor, mha, mask: Tensor) -> tuple[list[dict], Tensor, Tensor]:
    """Every head by :func:`attend_by_hand`, then ``Concat(head_1 … head_H) W_O + b_O`` (§3.2.2).

    Returns ``(per_head, heads (T_q, D), output (T_q, D))``.
    """
    per_head = [attend_by_hand(x_q, x_kv, mha, h, mask) for h in range(mha.n_heads)]
    heads = torch.cat([p["head_output"] for p in per_head], -1)  # (T_q, D)
    w_o, b_o = mha.out_proj.weight.T, mha.out_proj.bias  # (D, D): Concat @ W_O
    return per_head, heads, heads @ w_o + (b_o if b_o is not None else 0)


def _encoder_layers(model: nn.Module):
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layers", None)
    if layers is None or not all(isinstance(layer, EncoderLayer) for layer in layers):
        raise ValueError(f"{type(model).__name__} has no .encoder.layers of EncoderLayer to walk through")
    return list(layers)


@torch.no_grad()
def explain_head(
    model: nn.Module, src: Tensor, layer: int = 0, head: int = 0, tokens: Sequence[str] | None = None
) -> HeadWalkthrough:
    """Recompute head ``head`` of encoder layer ``layer`` by hand for one sentence and check it.

    Args:
        model: a :class:`qkv.Transformer` (or any model with ``encoder.layers`` of :class:`qkv.EncoderLayer`
            and ``encode(src, return_attention=True)`` returning the maps last, e.g. the text classifier).
        src: token ids ``(1, S)`` (or ``(S,)``), as the model's encoder receives them (with ``</s>``); for a
            :class:`qkv.models.vit.ViT`, one image ``(1, C, H, W)``.
        layer, head: which layer and head (0-based).
        tokens: labels of the S positions (default: the ids).

    Returns:
        A :class:`HeadWalkthrough`; ``.max_abs_diff`` is ~1e-6 when the hand computation matches.

    Example:
        >>> model = Transformer(TransformerConfig.preset("tiny", src_vocab_size=20, tgt_vocab_size=20))
        >>> walk = explain_head(model.eval(), torch.tensor([[5, 6, 7, 2]]), layer=1, head=0)
        >>> walk.weights.sum(-1)                                # doctest: +SKIP
        tensor([1., 1., 1., 1.])
    """
    if src.dim() == 1:
        src = src[None]
    if src.shape[0] != 1 or (src.dim() != 2 and not src.is_floating_point()):
        raise ValueError(
            f"explain_head takes one sentence, token ids (1, S) (or one image for a ViT), got {tuple(src.shape)}"
        )
    layers = _encoder_layers(model)
    if not 0 <= layer < len(layers):
        raise ValueError(
            f"layer {layer} out of range: the encoder has {len(layers)} layers (0 … {len(layers) - 1})"
        )
    mha = layers[layer].self_attn
    if not 0 <= head < mha.n_heads:
        raise ValueError(
            f"head {head} out of range: the layer has {mha.n_heads} heads (0 … {mha.n_heads - 1})"
        )
    was_training = model.training
    model.eval()  # no dropout: the walk-through must be deterministic
    captured: dict[int, tuple] = {}
    hooks = [
        lyr.register_forward_pre_hook(lambda mod, args, i=i: captured.__setitem__(i, args))
        for i, lyr in enumerate(layers)
    ]
    try:
        maps = model.encode(src, return_attention=True)[-1]  # the model's own forward pass
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    x_model, key_mask = captured[layer][0][0], captured[layer][1]  # (S, D), (1, 1, 1, S) or None
    s = x_model.shape[0]  # may exceed src's length (a classifier prepends [CLS])
    if tokens is None:
        ids = [str(t) for t in src[0].tolist()] if src.dim() == 2 else [f"p{i}" for i in range(s - 1)]  # patches
        tokens = ["[CLS]"] * (s - len(ids)) + ids
    tokens = [str(t) for t in tokens]
    if len(tokens) != s:
        raise ValueError(f"got {len(tokens)} token labels for the {s} positions the encoder sees")
    mask = (
        torch.ones(s, s, dtype=torch.bool) if key_mask is None else key_mask[0, 0].expand(s, s)
    )

    # X by hand: embeddings ×√d_model + positions, then the earlier layers (each output feeds the next)
    embeddings = positions = None
    if hasattr(model, "src_embed") and hasattr(model, "src_pos"):
        embeddings = model.src_embed(src)[0]  # (S, D), already × √d_model
        positions = model.src_pos.encodings(s).to(embeddings.dtype)  # (S, D)
        x = embeddings + positions
        for earlier in layers[:layer]:
            x = earlier(x[None], key_mask)[0][0]
    else:
        x = x_model  # another model (e.g. a classifier with [CLS]): take the input the model built

    block = layers[layer].attn_block
    attn_input = block.norm(x) if block.pre else x  # pre-LN reads LayerNorm(X) (option, not the paper)
    per_head, heads, output = multihead_by_hand(attn_input, attn_input, mha, mask)  # (S, D), (S, D)
    steps = per_head[head]
    w_o, b_o = mha.out_proj.weight.T, mha.out_proj.bias  # (D, D)
    layer_output = _rest_of_layer(layers[layer], x, output)
    model_output = mha(attn_input[None], attn_input[None], attn_input[None], key_mask)[0][0]
    model_layer_output = layers[layer](x_model[None], key_mask)[0][0]
    return HeadWalkthrough(
        tokens=tokens,
        layer=layer,
        head=head,
        embeddings=embeddings,
        positions=positions,
        x=x,
        x_model=x_model,
        attn_input=attn_input,
        mask=mask,
        heads=heads,
        w_o=w_o,
        b_o=b_o,
        output=output,
        layer_output=layer_output,
        model_weights=maps[layer][0, head].float(),
        model_output=model_output,
        model_layer_output=model_layer_output,
        **steps,
    )


def _rest_of_layer(layer: EncoderLayer, x: Tensor, attention: Tensor) -> Tensor:
    """Residual + LayerNorm around the attention output, then the FFN sublayer the same way (§3.1)."""
    a, f = layer.attn_block, layer.ffn_block
    if a.pre:
        h = x + attention
        return h + layer.ffn(f.norm(h))
    h = a.norm(x + attention)  # (S, D)
    return f.norm(h + layer.ffn(h))


# -- why √d_k -----------------------------------------------------------------------------------------------


@dataclass
class ScalingRow:
    """One d_k of :func:`scaling_table` (entropies in nats; the uniform distribution has ln(n_keys))."""

    d_k: int
    var_dot: float  # measured Var(q·k) ≈ d_k
    var_scaled: float  # Var(q·k / √d_k) ≈ 1
    entropy_unscaled: float  # mean entropy of softmax(q·K)
    entropy_scaled: float  # mean entropy of softmax(q·K / √d_k)
    max_weight_unscaled: float  # mean largest weight (1 = one-hot)
    max_weight_scaled: float


def _entropy(p: Tensor) -> Tensor:
    return -(p * torch.log(p.clamp_min(1e-30))).sum(-1)


def scaling_table(
    d_ks: Sequence[int] = (4, 16, 64, 256, 1024), n_keys: int = 32, n_queries: int = 256, seed: int = 0
) -> list[ScalingRow]:
    """Measure why Eq. 1 divides by √d_k (footnote 4 of §3.2.1).

    For each d_k, draw ``n_queries`` queries and ``n_keys`` keys per query with N(0, 1) entries, and measure
    the variance of q·k and the softmax over the keys with and without the scaling.
    """
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for d_k in d_ks:
        q = torch.randn(n_queries, 1, d_k, generator=gen, dtype=torch.float64)
        k = torch.randn(n_queries, n_keys, d_k, generator=gen, dtype=torch.float64)
        dots = (q * k).sum(-1)  # (N, n_keys) = q·k
        scaled = dots / math.sqrt(d_k)
        p_raw, p_scaled = torch.softmax(dots, -1), torch.softmax(scaled, -1)
        rows.append(
            ScalingRow(
                d_k=d_k,
                var_dot=dots.var().item(),
                var_scaled=scaled.var().item(),
                entropy_unscaled=_entropy(p_raw).mean().item(),
                entropy_scaled=_entropy(p_scaled).mean().item(),
                max_weight_unscaled=p_raw.max(-1).values.mean().item(),
                max_weight_scaled=p_scaled.max(-1).values.mean().item(),
            )
        )
    return rows


# -- plain-text tables ---------------------------------------------------------------------------------------


def format_matrix(
    m: Tensor,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    decimals: int = 3,
    max_rows: int = 16,
    max_cols: int = 16,
) -> str:
    """An aligned text table of a 1-D or 2-D tensor (bools as 1/0); large ones are cut with ``…``."""
    m = m.detach().cpu()
    if m.dim() == 1:
        m = m[None]
        row_labels = row_labels or [""]
    rows, cols = m.shape
    row_labels = list(row_labels) if row_labels is not None else [str(i) for i in range(rows)]
    col_labels = list(col_labels) if col_labels is not None else [str(j) for j in range(cols)]
    show_r, show_c = min(rows, max_rows), min(cols, max_cols)

    def cell(v) -> str:
        return ("1" if v else "0") if m.dtype == torch.bool else f"{float(v):.{decimals}f}"

    body = [[cell(m[i, j]) for j in range(show_c)] + (["…"] if cols > show_c else []) for i in range(show_r)]
    header = col_labels[:show_c] + (["…"] if cols > show_c else [])
    width = max(len(c) for c in [*header, *(c for r in body for c in r)])
    label_w = max([len(r) for r in row_labels[:show_r]] + [0])
    lines = [" " * label_w + "  " + " ".join(h[:width].rjust(width) for h in header)]
    for label, r in zip(row_labels, body):
        lines.append(label.ljust(label_w) + "  " + " ".join(c.rjust(width) for c in r))
    if rows > show_r:
        lines.append(f"… ({rows - show_r} more rows)")
    return "\n".join(lines)


def format_scaling_table(rows: Sequence[ScalingRow], n_keys: int = 32) -> str:
    """The rows of :func:`scaling_table` as an aligned text table."""
    head = ["d_k", "Var(q·k)", "Var(q·k/√d_k)", "H unscaled", "H scaled", "max w unscaled", "max w scaled"]
    lines = ["  ".join(f"{h:>14}" for h in head)]
    for r in rows:
        vals = [
            r.d_k,
            r.var_dot,
            r.var_scaled,
            r.entropy_unscaled,
            r.entropy_scaled,
            r.max_weight_unscaled,
            r.max_weight_scaled,
        ]
        lines.append("  ".join(f"{v:>14}" if isinstance(v, int) else f"{v:>14.3f}" for v in vals))
    lines.append(
        f"(entropy H in nats over {n_keys} keys; uniform = ln {n_keys} = {math.log(n_keys):.3f}, one-hot = 0)"
    )
    return "\n".join(lines)


# -- a model to explain when no checkpoint is given ----------------------------------------------------------


def word_level_demo(sentence: str, seed: int = 0, d_model: int = 16, n_heads: int = 2, n_layers: int = 2):
    """A small seeded, untrained Transformer with a word-level vocabulary built from ``sentence``.

    Returns:
        ``(model, src (1, S), tokens)``: the words (lower-cased) plus ``</s>``, ids from 4 up (0–3 are
        PAD/BOS/EOS/UNK). Small sizes so every table prints whole.
    """
    from qkv.models.transformer import Transformer, TransformerConfig

    words = sentence.lower().split()
    if not words:
        raise ValueError("the sentence is empty: give at least one word")
    vocab = {w: 4 + i for i, w in enumerate(dict.fromkeys(words))}
    size = 4 + len(vocab)
    config = TransformerConfig.preset(
        "tiny",
        src_vocab_size=size,
        tgt_vocab_size=size,
        d_model=d_model,
        n_heads=n_heads,
        d_ff=2 * d_model,
        n_layers=n_layers,
        dropout=0.0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Transformer(config).eval()
    src = torch.tensor([[vocab[w] for w in words] + [2]])  # (1, S), EOS = 2 appended as for a real source
    return model, src, [*words, "</s>"]
