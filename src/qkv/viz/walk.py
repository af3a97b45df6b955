"""Attention by hand for every cell of every head: the numbers behind the explorer's arithmetic panel.

The model runs its own forward pass once, with a hook on every :class:`~qkv.nn.attention.MultiHeadAttention`
of each kind (encoder self, decoder masked self, cross; or a classifier's / ViT's encoder self-attention).
Each hook keeps what the module received (the query X, the key/value X, the mask, the causal flag) and what it
returned (MultiHead(X) and the weights). Every head is then recomputed by hand with the code of ``qkv explain``
(:func:`qkv.viz.explain.multihead_by_hand`, Eq. 1 and §3.2.2), and ``max |hand − model|`` is recorded per layer.

The page shows, for a clicked cell (query i, key j) of head h: x_i, q_i = x_i W_Q (first values and the norm),
k_j, q_i·k_j, the scaling by √d_k, the mask, the whole softmax row, the output row Σ_j w_ij v_j, and the
concatenation of the heads times W_O. Only the first ``n_show`` values of each vector travel (plus its norm),
and layers are added until ``limit_bytes`` of JSON; the document says what it left out.

Legend: L layers, H heads, T_q queries, T_k keys, D d_model, Dh head dimension, n shown values.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from qkv.nn.masks import causal_mask, combine_masks
from qkv.viz.explain import multihead_by_hand

DEFAULT_LIMIT_BYTES = 3_000_000  # the walk-through JSON embedded in one page (serve or offline HTML)
KIND_ORDER = ("encoder_self", "decoder_self", "cross")


@dataclass
class AttentionCall:
    """One call of a multi-head attention module in the forward pass (batch row 0)."""

    query: Tensor  # (T_q, D) the X the queries are projected from
    key: Tensor  # (T_k, D) the X the keys and values are projected from (the encoder output for cross)
    mask: Tensor  # (T_q, T_k) bool, True = may attend (key padding and causal mask combined)
    output: Tensor  # (T_q, D) the module's MultiHead(X)
    weights: Tensor | None  # (H, T_q, T_k) the module's softmax weights (None if it did not return them)


def attention_modules(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The attention modules of a model by kind: ``encoder_self``, ``decoder_self``, ``cross`` (each per layer)."""
    found: dict[str, list[nn.Module]] = {}
    encoder = getattr(getattr(model, "encoder", None), "layers", None)
    if encoder is not None:
        found["encoder_self"] = [layer.self_attn for layer in encoder]
    decoder = getattr(getattr(model, "decoder", None), "layers", None)
    if decoder is not None:
        found["decoder_self"] = [layer.self_attn for layer in decoder]
        found["cross"] = [layer.cross_attn for layer in decoder]
    if not found:
        raise ValueError(f"{type(model).__name__} has no encoder/decoder layers with attention to walk through")
    return found


def _full_mask(mask: Tensor | None, is_causal: bool, t_q: int, t_k: int) -> Tensor:
    """The (T_q, T_k) mask a call used: its mask (batch row 0, head 0) AND the causal mask if asked."""
    full = combine_masks(mask, causal_mask(t_q, t_k, device=mask.device if mask is not None else None)
                         if is_causal else None)
    if full is None:
        return torch.ones(t_q, t_k, dtype=torch.bool)
    while full.dim() > 2:
        full = full[0]  # (B, H, T_q, T_k) -> (T_q, T_k): one example, heads share the mask
    return full.expand(t_q, t_k).cpu()


def capture_attention(modules: dict[str, list[nn.Module]], run: Callable[[], Any]):
    """Run ``run()`` (the model's forward pass) and keep the last cache-free call of every module.

    Returns:
        ``(run's result, {kind: [AttentionCall per layer]})``.
    """
    calls: dict[str, list[AttentionCall | None]] = {k: [None] * len(m) for k, m in modules.items()}

    def hook(kind: str, layer: int):
        def keep(module, args, kwargs, result) -> None:
            bound = inspect.signature(module.forward).bind(*args, **kwargs)
            bound.apply_defaults()
            a = bound.arguments
            if a["cache"] is not None:
                return  # a decoding step: not the full forward pass
            query, key = a["query"][0], a["key"][0]  # (T_q, D), (T_k, D)
            weights = result[1][0] if result[1] is not None else None  # (H, T_q, T_k)
            mask = _full_mask(a["mask"], a["is_causal"], query.shape[0], key.shape[0])
            calls[kind][layer] = AttentionCall(query.detach(), key.detach(), mask, result[0][0].detach(),
                                               None if weights is None else weights.detach())
        return keep

    handles = [
        m.register_forward_hook(hook(kind, i), with_kwargs=True)
        for kind, mods in modules.items()
        for i, m in enumerate(mods)
    ]
    try:
        result = run()
    finally:
        for h in handles:
            h.remove()
    missing = [f"{k} layer {i + 1}" for k, c in calls.items() for i, call in enumerate(c) if call is None]
    if missing:
        raise ValueError(f"the forward pass did not call every attention module: {', '.join(missing)}")
    return result, calls


def _rows(x: Tensor, n: int, decimals: int) -> tuple[list, list]:
    """First ``n`` values of each row and the row norms, rounded for JSON."""
    x = x.double()
    return torch.round(x[:, :n], decimals=decimals).tolist(), torch.round(x.norm(dim=-1), decimals=decimals).tolist()


def layer_walk(call: AttentionCall, mha, n_show: int = 8, decimals: int = 6) -> dict:
    """The JSON of one layer of one kind: the mask, the check, and every head's vectors and scores."""
    with torch.no_grad():
        per_head, heads, output = multihead_by_hand(call.query.float(), call.key.float(), mha, call.mask)
    check = {"MultiHead(X)": (output - call.output.float()).abs().max().item()}
    if call.weights is not None:
        hand = torch.stack([p["weights"] for p in per_head])  # (H, T_q, T_k)
        check["attention weights"] = (hand - call.weights.float()).abs().max().item()
    x_q, x_q_norm = _rows(call.query, n_show, decimals)
    x_kv, x_kv_norm = _rows(call.key, n_show, decimals)
    out, out_norm = _rows(output, n_show, decimals)
    _, concat_norm = _rows(heads, n_show, decimals)
    walk_heads = []
    for p in per_head:
        entry = {}
        for name in ("q", "k", "v", "head_output"):
            entry[name], entry[name + "_norm"] = _rows(p[name], n_show, decimals)
        entry["scores"] = torch.round(p["scores"].double(), decimals=decimals).tolist()  # (T_q, T_k) q·kᵀ
        walk_heads.append(entry)
    return {
        "mask": call.mask.int().tolist(),  # (T_q, T_k) 1 = may attend
        "check": check,
        "x_q": x_q, "x_q_norm": x_q_norm, "x_kv": x_kv, "x_kv_norm": x_kv_norm,
        "heads": walk_heads,
        "concat_norm": concat_norm,
        "output": out, "output_norm": out_norm,
        "has_out_bias": mha.out_proj.bias is not None,
    }


def walk_data(
    calls: dict[str, list[AttentionCall]],
    modules: dict[str, list[nn.Module]],
    n_show: int = 8,
    decimals: int = 6,
    limit_bytes: int = DEFAULT_LIMIT_BYTES,
) -> dict:
    """Every layer of every kind as :func:`layer_walk`, layer by layer (layer 1 of each kind first) until
    ``limit_bytes`` of JSON; layers past the limit are ``null`` and listed in ``omitted``."""
    kinds = {
        name: {
            "n_heads": modules[name][0].n_heads,
            "d_model": modules[name][0].d_model,
            "d_k": modules[name][0].d_head,
            "layers": [None] * len(calls[name]),
        }
        for name in calls
    }
    used, omitted = 0, []
    order = sorted(calls, key=lambda k: KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER))
    for layer in range(max(len(c) for c in calls.values())):
        for name in order:
            if layer >= len(calls[name]):
                continue
            entry = layer_walk(calls[name][layer], modules[name][layer], n_show, decimals)
            size = len(json.dumps(entry, separators=(",", ":")))
            if used + size > limit_bytes:
                omitted.append({"kind": name, "layer": layer})
                continue
            kinds[name]["layers"][layer] = entry
            used += size
    checks = [v for k in kinds.values() for e in k["layers"] if e for v in e["check"].values()]
    return {
        "n_show": n_show,
        "limit_bytes": limit_bytes,
        "bytes": used,
        "omitted": omitted,
        "max_abs_diff": max(checks) if checks else None,
        "kinds": kinds,
    }


def model_walk(model: nn.Module, run: Callable[[], Any], **options) -> dict:
    """Capture ``run()`` (a forward pass of ``model``) and build :func:`walk_data` from it.

    Example:
        >>> walk = model_walk(tr.model, lambda: tr.attention(source, translation))      # doctest: +SKIP
        >>> walk = model_walk(classifier, lambda: classifier(ids, return_attention=True))  # doctest: +SKIP
    """
    modules = attention_modules(model)
    was_training = model.training
    model.eval()  # no dropout: the numbers must be the deterministic forward pass
    try:
        _, calls = capture_attention(modules, run)
    finally:
        model.train(was_training)
    return walk_data(calls, modules, **options)
