"""Looking inside: attention heatmaps, alignments, an HTML explorer, attention by hand, positions, a web app.

Every view takes plain inputs, so any qkv model that attends fits (see :mod:`qkv.viz.maps`):

- :mod:`qkv.viz.maps`: kind → list of ``(B, H, T_q, T_k)`` maps + axis labels -> :class:`AttentionKind`;
  raw matrices to/from ``.npz``;
- :mod:`qkv.viz.heatmap`: one figure per layer and kind, heads as panels (matplotlib);
- :mod:`qkv.viz.alignment`: cross-attention averaged over heads, as a matrix and as lines;
- :mod:`qkv.viz.html`: a self-contained interactive HTML explorer; :mod:`qkv.viz.export` writes them all;
- :mod:`qkv.viz.explain`: one head computed by hand and checked against the forward pass; why √d_k;
- :mod:`qkv.viz.positions`: the sinusoidal encodings of §3.5;
- :mod:`qkv.viz.serve`: the local web app behind ``qkv serve``.
"""

from qkv.viz.maps import (
    AttentionKind,
    collect_kinds,
    head_average,
    load_matrices,
    patch_labels,
    save_matrices,
    transformer_kinds,
)

__all__ = [
    "AttentionKind",
    "collect_kinds",
    "head_average",
    "load_matrices",
    "patch_labels",
    "save_matrices",
    "transformer_kinds",
]
