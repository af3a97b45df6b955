"""Pictures of the sinusoidal positional encoding, §3.5.

    PE(pos, 2i) = sin(pos / 10000^(2i/d_model)),   PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model))

Left: the matrix itself (position × dimension): fast waves in the first dimensions, slow ones in the last.
Right: the dot products PE(p)·PE(q) of every pair of positions. They depend only on p − q (a sum of
cos(ω_i (p − q))), peak on the diagonal and fall off with distance: the property the paper hoped would let
the model "easily learn to attend by relative positions". Legend: T positions, D d_model.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from torch import Tensor

from qkv.nn.positional import sinusoidal_table


def position_similarity(table: Tensor) -> Tensor:
    """Dot products of every pair of positions: ``(T, D) -> (T, T)``."""
    return table @ table.T  # (T, T)


def positions_figure(d_model: int = 128, max_len: int = 100) -> Figure:
    """The encoding matrix and the position similarity side by side.

    Args:
        d_model: model dimension D (even).
        max_len: number of positions T shown.
    """
    if d_model < 2 or d_model % 2:
        raise ValueError(f"d_model must be an even number >= 2, got {d_model}")
    if max_len < 1:
        raise ValueError(f"max_len must be positive, got {max_len}")
    table = sinusoidal_table(max_len, d_model)  # (T, D)
    sim = position_similarity(table)  # (T, T)
    fig = Figure(figsize=(13, 5.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    image = left.imshow(table.numpy(), cmap="RdBu", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    left.set_xlabel("dimension i (even: sin, odd: cos)")
    left.set_ylabel("position")
    left.set_title(f"PE matrix ({max_len} positions × d_model={d_model})")
    fig.colorbar(image, ax=left, shrink=0.8, label="PE value")
    image = right.imshow(sim.numpy(), cmap="viridis", aspect="auto", interpolation="nearest")
    right.set_xlabel("position q")
    right.set_ylabel("position p")
    right.set_title("PE(p) · PE(q): depends only on p − q")
    fig.colorbar(image, ax=right, shrink=0.8, label="dot product")
    fig.suptitle("Sinusoidal positional encoding (§3.5)")
    return fig
