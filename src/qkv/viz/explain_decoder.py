"""Attention by hand in the decoder: one head of the masked self-attention or of the cross-attention of one
decoder layer (§3.2.3), every intermediate tensor, checked against the model (as :mod:`qkv.viz.explain` does for
the encoder).

For head h of decoder layer l, with Y the real input of that layer (T target positions) and M the encoder
output (S source positions):

    self:   Q = Y W_Q^h,  K = Y W_K^h,  V = Y W_V^h          weights (T, T), causal: query i sees keys ≤ i
    cross:  Q = Z W_Q^h,  K = M W_K^h,  V = M W_V^h          weights (T, S), source padding masked
            Z = LayerNorm(Y + SelfAttn(Y))                   (post-LN; the self-attention sublayer's output)

Y of layer 0 is the target embeddings ×√d_model plus the positional encodings (§3.4–3.5); of layer l > 0 the
output of layer l − 1. With pre-LN (option) the attention reads LayerNorm of its input.

Legend: T target length, S source length, D d_model, H heads, Dh head dimension.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from qkv.nn.layers import DecoderLayer
from qkv.viz.explain import HeadWalkthrough, multihead_by_hand

KINDS = ("self", "cross")


def _sublayer(block, x: Tensor, attention: Tensor) -> Tensor:
    """Residual (+ LayerNorm, post-LN) around a sublayer output (§3.1)."""
    return x + attention if block.pre else block.norm(x + attention)


def _rest_of_layer(lyr: DecoderLayer, x: Tensor, z: Tensor | None, output: Tensor, memory, memory_mask, kind: str):
    """The decoder layer's output from the head's sublayer output: the remaining sublayers via their modules."""
    if kind == "self":
        z = _sublayer(lyr.self_block, x, output)  # (T, D)
        z = lyr.cross_block(z[None], lambda h: lyr.cross_attn(h, memory[None], memory[None], memory_mask))[0][0]
    else:
        z = _sublayer(lyr.cross_block, z, output)
    return lyr.ffn_block(z[None], lambda h: (lyr.ffn(h), None))[0][0]  # (T, D)


@torch.no_grad()
def explain_decoder_head(
    model: nn.Module,
    src: Tensor,
    tgt: Tensor,
    layer: int = 0,
    head: int = 0,
    kind: str = "self",
    tokens: Sequence[str] | None = None,
) -> HeadWalkthrough:
    """Recompute head ``head`` of decoder layer ``layer`` (``kind`` ``"self"`` or ``"cross"``) by hand and check it.

    Args:
        model: a :class:`qkv.Transformer`.
        src: source ids ``(1, S)`` (with ``</s>``); tgt: decoder input ids ``(1, T)`` (``<s>`` first).
        tokens: labels of the T target positions (default: the ids).

    Returns:
        A :class:`~qkv.viz.explain.HeadWalkthrough` (rows are target positions; for ``"cross"`` the keys are the
        S source positions and ``attn_input`` is the query input); ``.max_abs_diff`` ~1e-6 when it matches.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if src.dim() != 2 or tgt.dim() != 2 or src.shape[0] != 1 or tgt.shape[0] != 1:
        raise ValueError(
            f"explain_decoder_head takes one pair (1, S), (1, T), got {tuple(src.shape)}, {tuple(tgt.shape)}"
        )
    layers = list(getattr(getattr(model, "decoder", None), "layers", []))
    if not layers or not all(isinstance(lyr, DecoderLayer) for lyr in layers):
        raise ValueError(f"{type(model).__name__} has no .decoder.layers of DecoderLayer to walk through")
    if not 0 <= layer < len(layers):
        raise ValueError(f"layer {layer} out of range: the decoder has {len(layers)} layers (0 … {len(layers) - 1})")
    lyr = layers[layer]
    mha = lyr.self_attn if kind == "self" else lyr.cross_attn
    if not 0 <= head < mha.n_heads:
        raise ValueError(f"head {head} out of range: the layer has {mha.n_heads} heads (0 … {mha.n_heads - 1})")
    was_training = model.training
    model.eval()
    captured: dict[int, tuple] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, a, i=i: captured.__setitem__(i, a)) for i, m in enumerate(layers)]
    try:
        _, maps = model(src, tgt, return_attention=True)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    x_model, memory, memory_mask = captured[layer][0][0], captured[layer][1][0], captured[layer][2]
    t, s = tgt.shape[1], memory.shape[0]

    embeddings = model.tgt_embed(tgt)[0]  # (T, D), × √d_model
    positions = model.tgt_pos.encodings(t).to(embeddings.dtype)  # (T, D)
    x = embeddings + positions
    for earlier in layers[:layer]:
        x = earlier(x[None], memory[None], memory_mask)[0][0]

    z = None
    if kind == "self":
        attn_input = lyr.self_block.norm(x) if lyr.self_block.pre else x
        kv, mask = attn_input, torch.ones(t, t, dtype=torch.bool).tril()  # causal (§3.2.3)
        model_output = mha(attn_input[None], attn_input[None], attn_input[None], is_causal=True)[0][0]
    else:
        z = lyr.self_block(x[None], lambda h: lyr.self_attn(h, h, h, is_causal=True))[0][0]  # (T, D)
        attn_input = lyr.cross_block.norm(z) if lyr.cross_block.pre else z
        kv = memory
        mask = (torch.ones(1, s, dtype=torch.bool) if memory_mask is None else memory_mask.reshape(1, -1)).expand(t, s)
        model_output = mha(attn_input[None], memory[None], memory[None], memory_mask)[0][0]
    per_head, heads, output = multihead_by_hand(attn_input, kv, mha, mask)  # (T, D), (T, D)
    w_o, b_o = mha.out_proj.weight.T, mha.out_proj.bias  # (D, D)
    model_maps = maps.decoder_self if kind == "self" else maps.cross
    return HeadWalkthrough(
        tokens=[str(tok) for tok in tokens] if tokens is not None else [str(i) for i in tgt[0].tolist()],
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
        layer_output=_rest_of_layer(lyr, x, z, output, memory, memory_mask, kind),
        model_weights=model_maps[layer][0, head].float(),
        model_output=model_output,
        model_layer_output=lyr(x_model[None], memory[None], memory_mask)[0][0],
        **per_head[head],
    )
