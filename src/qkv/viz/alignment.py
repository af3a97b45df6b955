"""Source–target alignment from cross-attention (§3.2.3, "encoder-decoder attention").

Averaging the heads of one decoder layer's cross-attention gives, for each target position t, a distribution
over the source positions: a soft word alignment (Bahdanau et al. 2015 drew the same picture for RNN
attention). Shown two ways: as a ``(T, S)`` matrix, and as lines from each target token to each source token
whose opacity is the weight. Legend: T target positions (queries), S source positions (keys).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from qkv.viz.heatmap import draw_heatmap
from qkv.viz.maps import AttentionKind, head_average


def alignment_matrix(cross: AttentionKind, layer: int = -1) -> np.ndarray:
    """Cross-attention of ``layer`` averaged over heads, ``(T, S)``; row t sums to 1 (default: last layer)."""
    if cross.name != "cross":
        raise ValueError(f"an alignment needs the cross-attention maps, got kind {cross.name!r}")
    return head_average(cross, layer)


def draw_alignment_lines(
    ax, matrix: np.ndarray, src_tokens: Sequence[str], tgt_tokens: Sequence[str]
) -> None:
    """Source tokens on a top row, target tokens on a bottom row, one line per pair with alpha = weight."""
    t_len, s_len = matrix.shape
    width = max(s_len, t_len) - 1 or 1

    def xs(n: int) -> np.ndarray:
        return np.linspace(0, width, n) if n > 1 else np.array([width / 2])

    sx, tx = xs(s_len), xs(t_len)
    for t in range(t_len):
        for s in range(s_len):
            w = float(matrix[t, s])
            if w >= 0.01:
                ax.plot([tx[t], sx[s]], [0, 1], color="tab:blue", alpha=min(1.0, w), lw=0.5 + 3 * w)
    for s, label in enumerate(src_tokens):
        ax.text(sx[s], 1.04, label, ha="center", va="bottom", rotation=60, fontsize=8)
    for t, label in enumerate(tgt_tokens):
        ax.text(tx[t], -0.04, label, ha="center", va="top", rotation=60, fontsize=8)
    ax.set_xlim(-0.8, width + 0.8)
    ax.set_ylim(-0.35, 1.35)
    ax.axis("off")


def alignment_figure(cross: AttentionKind, layer: int = -1) -> Figure:
    """The alignment of one layer as a matrix (left) and as weighted lines between the sentences (right).

    Args:
        cross: the ``"cross"`` kind (queries = target tokens, keys = source tokens).
        layer: decoder layer (0-based; negative counts from the end).
    """
    matrix = alignment_matrix(cross, layer)  # (T, S)
    number = layer % cross.n_layers + 1
    fig = Figure(figsize=(13, 5.5), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.4])
    image = draw_heatmap(left, matrix, cross.query_tokens, cross.key_tokens, float(max(matrix.max(), 1e-6)))
    left.set_xlabel("source (keys)")
    left.set_ylabel("target (queries)")
    fig.colorbar(image, ax=left, shrink=0.8, label="mean weight over heads")
    draw_alignment_lines(right, matrix, cross.key_tokens, cross.query_tokens)
    right.set_title("source (top) ← target (bottom); opacity = weight", fontsize=10)
    fig.suptitle(
        f"Source–target alignment: cross-attention of layer {number}, averaged over {cross.n_heads} heads"
    )
    return fig
