"""Attention maps of any qkv model, as plain arrays with a label on every axis.

Every view in :mod:`qkv.viz` (heatmaps, the HTML explorer, the alignment view, the web app) takes the same
input, so any model that attends fits: a dict *kind → list of L maps* ``(B, H, T_q, T_k)`` (one per layer,
the softmax weights of Eq. 1) and, per kind, the labels of the query axis and of the key axis.

- encoder-decoder Transformer: ``encoder_self`` (source × source), ``decoder_self`` (target × target, zero
  above the diagonal, §3.2.3) and ``cross`` (target × source), see :func:`transformer_kinds`;
- encoder-only classifier: ``{"encoder_self": maps}`` with the sentence's tokens (and ``[CLS]``) on both axes;
- ViT: ``{"encoder_self": maps}`` with :func:`patch_labels` (``cls``, ``p0``, ``p1`` …) on both axes.

Legend: L layers, B batch, H heads, T_q queries, T_k keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

KIND_TITLES = {
    "encoder_self": "Encoder self-attention",
    "decoder_self": "Decoder masked self-attention",
    "cross": "Cross-attention (decoder → encoder)",
}


@dataclass
class AttentionKind:
    """The maps of one kind of attention for one example, with labels.

    Attributes:
        name: e.g. ``"encoder_self"``.
        weights: float32 array ``(L, H, T_q, T_k)``.
        query_tokens: ``T_q`` labels of the rows (the positions that attend).
        key_tokens: ``T_k`` labels of the columns (the positions attended to).
    """

    name: str
    weights: np.ndarray
    query_tokens: list[str]
    key_tokens: list[str]

    @property
    def title(self) -> str:
        return KIND_TITLES.get(self.name, self.name.replace("_", " ").capitalize())

    @property
    def n_layers(self) -> int:
        return self.weights.shape[0]

    @property
    def n_heads(self) -> int:
        return self.weights.shape[1]


def _as_array(m: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(m, Tensor):
        return m.detach().to("cpu", torch.float32).numpy()
    return np.asarray(m, dtype=np.float32)


def collect_kinds(
    maps: Mapping[str, Sequence[Tensor | np.ndarray]],
    labels: Mapping[str, tuple[Sequence[str], Sequence[str]]],
    index: int = 0,
) -> list[AttentionKind]:
    """Check maps against their labels and stack the layers of example ``index`` of the batch.

    Args:
        maps: kind → list of L tensors ``(B, H, T_q, T_k)`` (or ``(H, T_q, T_k)`` for a single example).
        labels: kind → ``(query_tokens, key_tokens)``.
        index: which example of the batch to take.

    Returns:
        One :class:`AttentionKind` per kind with at least one layer, in the order of ``maps``.

    Example:
        >>> w = torch.softmax(torch.randn(1, 2, 3, 3), -1)
        >>> abc = ["a", "b", "c"]
        >>> kinds = collect_kinds({"encoder_self": [w, w]}, {"encoder_self": (abc, abc)})
        >>> kinds[0].weights.shape
        (2, 2, 3, 3)
    """
    kinds = []
    for name, layers in maps.items():
        if not layers:
            continue
        if name not in labels:
            raise ValueError(
                f"no token labels given for attention kind {name!r}; labels has {sorted(labels)}"
            )
        query_tokens, key_tokens = (list(map(str, t)) for t in labels[name])
        stacked = []
        for layer, m in enumerate(layers):
            a = _as_array(m)
            if a.ndim == 4:
                if not 0 <= index < a.shape[0]:
                    raise ValueError(f"{name} layer {layer}: batch index {index} out of range for {a.shape}")
                a = a[index]  # (H, T_q, T_k)
            if a.ndim != 3:
                raise ValueError(
                    f"{name} layer {layer}: expected (B, H, T_q, T_k) or (H, T_q, T_k), got {a.shape}"
                )
            want = (len(query_tokens), len(key_tokens))
            if a.shape[1:] != want:
                raise ValueError(
                    f"{name} layer {layer}: map of shape {a.shape} does not match the labels: expected "
                    f"(H, {want[0]} query tokens, {want[1]} key tokens)"
                )
            if stacked and a.shape != stacked[0].shape:
                raise ValueError(
                    f"{name} layer {layer}: shape {a.shape} differs from layer 0's {stacked[0].shape}"
                )
            stacked.append(a)
        kinds.append(AttentionKind(name, np.stack(stacked), query_tokens, key_tokens))  # (L, H, T_q, T_k)
    if not kinds:
        raise ValueError("no attention maps to show (every kind has zero layers)")
    return kinds


def transformer_kinds(attention_maps, src_tokens: Sequence[str], tgt_tokens: Sequence[str], index: int = 0):
    """The three kinds of a :class:`qkv.AttentionMaps` (encoder-decoder Transformer, §3.2.3).

    Args:
        attention_maps: a :class:`qkv.AttentionMaps` (``encoder_self``, ``decoder_self``, ``cross``).
        src_tokens: labels of the encoder positions (source subwords and ``</s>``).
        tgt_tokens: labels of the decoder positions (``<s>`` and the target subwords).
    """
    maps = {
        "encoder_self": attention_maps.encoder_self,
        "decoder_self": attention_maps.decoder_self,
        "cross": attention_maps.cross,
    }
    labels = {
        "encoder_self": (src_tokens, src_tokens),
        "decoder_self": (tgt_tokens, tgt_tokens),
        "cross": (tgt_tokens, src_tokens),
    }
    return collect_kinds(maps, labels, index)


def patch_labels(n_patches: int, cls: bool = True) -> list[str]:
    """Axis labels of a ViT: ``["cls", "p0", "p1", …]`` (patches as tokens)."""
    return (["cls"] if cls else []) + [f"p{i}" for i in range(n_patches)]


def head_average(kind: AttentionKind, layer: int) -> np.ndarray:
    """The maps of one layer averaged over its heads, ``(T_q, T_k)`` (rows still sum to 1)."""
    if not -kind.n_layers <= layer < kind.n_layers:
        raise ValueError(f"layer {layer} out of range: {kind.name} has {kind.n_layers} layers")
    return kind.weights[layer].mean(axis=0)


def save_matrices(kinds: Sequence[AttentionKind], path: str | Path) -> Path:
    """Save the raw maps to one ``.npz``: ``{kind}`` ``(L, H, T_q, T_k)``, ``{kind}.query``, ``{kind}.keys``.

    Loadable without pickle (``np.load(path)``; token labels are unicode arrays). See :func:`load_matrices`.
    """
    path = Path(path)
    arrays = {}
    for k in kinds:
        arrays[k.name] = k.weights
        arrays[f"{k.name}.query"] = np.array(k.query_tokens, dtype=str)
        arrays[f"{k.name}.keys"] = np.array(k.key_tokens, dtype=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def load_matrices(path: str | Path) -> list[AttentionKind]:
    """Read a file written by :func:`save_matrices`."""
    with np.load(path, allow_pickle=False) as data:
        names = [n for n in data.files if "." not in n]
        return [
            AttentionKind(n, data[n], data[f"{n}.query"].tolist(), data[f"{n}.keys"].tolist()) for n in names
        ]


def kinds_to_json(kinds: Sequence[AttentionKind], decimals: int = 4) -> list[dict]:
    """JSON-ready dicts (weights rounded to ``decimals``) for the HTML explorer and the web app."""
    return [
        {
            "name": k.name,
            "title": k.title,
            "query_tokens": k.query_tokens,
            "key_tokens": k.key_tokens,
            "weights": np.round(k.weights.astype(np.float64), decimals).tolist(),  # L × H × T_q × T_k
        }
        for k in kinds
    ]


def json_for_script(data) -> str:
    """``json.dumps`` safe to place inside an HTML ``<script>`` element (no ``</script>`` or ``<!--``)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
