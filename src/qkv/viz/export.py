"""Everything ``qkv attention`` writes for one example: heatmaps, alignment, raw matrices, HTML explorer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from qkv.viz.alignment import alignment_figure
from qkv.viz.heatmap import save_layer_figures
from qkv.viz.html import save_explorer_html
from qkv.viz.lessons import lessons_data
from qkv.viz.maps import AttentionKind, save_matrices


def export_attention(
    kinds: Sequence[AttentionKind],
    out_dir: str | Path,
    title: str = "Attention",
    subtitle: str = "",
    formats: Sequence[str] = ("png", "svg"),
    alignment_layer: int = -1,
    walk: dict | None = None,
) -> list[Path]:
    """Write every view of ``kinds`` into ``out_dir`` and return the written paths.

    - ``{kind}_layer{l}.{png,svg}``: one grid of heads per layer and kind (l counts from 1);
    - ``alignment_layer{l}.{png,svg}``: cross-attention averaged over heads, when there is cross-attention;
    - ``attention.npz``: the raw maps (see :func:`qkv.viz.maps.save_matrices`);
    - ``attention.html``: the self-contained interactive explorer, opening its alignment view on the same
      layer as the PNG; with ``walk`` (:func:`qkv.viz.walk.model_walk`) a click on a cell shows its arithmetic.
    """
    out = Path(out_dir)
    written = save_layer_figures(kinds, out, formats)
    cross = next((k for k in kinds if k.name == "cross"), None)
    if cross is not None:
        fig = alignment_figure(cross, alignment_layer)
        number = alignment_layer % cross.n_layers + 1
        for fmt in formats:
            path = out / f"alignment_layer{number}.{fmt}"
            fig.savefig(path, dpi=110)
            written.append(path)
    written.append(save_matrices(kinds, out / "attention.npz"))
    d_model = next((k["d_model"] for k in walk["kinds"].values()), 128) if walk else 128
    written.append(
        save_explorer_html(
            kinds, out / "attention.html", title, subtitle, walk=walk, alignment_layer=alignment_layer,
            lessons=lessons_data(d_model),
        )
    )
    return written
