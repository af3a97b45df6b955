"""Attention heatmaps with matplotlib: one figure per layer and kind, one panel per head.

Each panel shows the softmax weights of Eq. 1 for one head (§3.2.2): row i is the distribution of query i
over the keys, so every row sums to 1. Legend: L layers, H heads, T_q queries (rows), T_k keys (columns).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # a bare Figure (no pyplot): no display, no global state, thread-safe

from qkv.viz.maps import AttentionKind

MAX_TICK_LABELS = 48  # beyond this many tokens, label every n-th one so the axis stays readable


def _ticks(ax, n: int, labels: Sequence[str], axis: str) -> None:
    step = max(1, math.ceil(n / MAX_TICK_LABELS))
    positions = list(range(0, n, step))
    size = 8 if n <= 20 else 6
    if axis == "x":
        ax.set_xticks(positions, [labels[i] for i in positions], rotation=90, fontsize=size)
    else:
        ax.set_yticks(positions, [labels[i] for i in positions], fontsize=size)


def draw_heatmap(ax, weights: np.ndarray, query_tokens, key_tokens, vmax: float = 1.0, title: str = ""):
    """Draw one ``(T_q, T_k)`` map on ``ax`` (keys on x, queries on y); returns the image for a colour bar."""
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto", interpolation="nearest")
    _ticks(ax, weights.shape[1], key_tokens, "x")
    _ticks(ax, weights.shape[0], query_tokens, "y")
    ax.set_title(title, fontsize=10)
    return image


def layer_figure(kind: AttentionKind, layer: int) -> Figure:
    """The heads of one layer of one kind as a grid of heatmaps with one shared colour bar.

    Args:
        kind: the maps and labels (see :func:`qkv.viz.maps.collect_kinds`).
        layer: layer index (0-based; titles count from 1).

    Example:
        >>> fig = layer_figure(kinds[0], 0)             # doctest: +SKIP
        >>> fig.savefig("encoder_self_layer1.png")      # doctest: +SKIP
    """
    weights = kind.weights[layer]  # (H, T_q, T_k)
    n_heads, t_q, t_k = weights.shape
    cols = min(n_heads, 4)
    rows = math.ceil(n_heads / cols)
    cell = max(2.6, min(6.0, 0.22 * max(t_q, t_k) + 1.2))
    fig = Figure(figsize=(cols * cell + 1.2, rows * cell + 0.8), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    vmax = float(max(weights.max(), 1e-6))
    image = None
    for h, ax in enumerate(axes):
        if h >= n_heads:
            ax.axis("off")
            continue
        image = draw_heatmap(ax, weights[h], kind.query_tokens, kind.key_tokens, vmax, f"head {h + 1}")
        if h % cols == 0:
            ax.set_ylabel("query (attends)", fontsize=8)
        if h >= n_heads - cols:
            ax.set_xlabel("key (attended to)", fontsize=8)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="attention weight")
    fig.suptitle(f"{kind.title} — layer {layer + 1} of {kind.n_layers}", fontsize=12)
    return fig


def save_layer_figures(
    kinds: Sequence[AttentionKind],
    out_dir: str | Path,
    formats: Sequence[str] = ("png", "svg"),
    dpi: int = 110,
) -> list[Path]:
    """Save :func:`layer_figure` for every kind and layer as ``{kind}_layer{l}.{fmt}`` (l from 1).

    Returns:
        The written paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in kinds:
        for layer in range(kind.n_layers):
            fig = layer_figure(kind, layer)
            for fmt in formats:
                path = out / f"{kind.name}_layer{layer + 1}.{fmt}"
                fig.savefig(path, dpi=dpi)
                written.append(path)
    return written
