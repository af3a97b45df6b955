"""A self-contained HTML attention explorer, in the spirit of bertviz's head and model views.

One file, no network: the CSS and JavaScript (``explorer.css``, the :data:`SCRIPTS` beside this module) are
inlined and the maps are inline JSON. Flip through kinds, layers and heads, see every layer × head at once,
hover a cell for the token pair and its weight, and (with cross-attention) see the source–target alignment.
With a walk-through (:mod:`qkv.viz.walk`) a click on a cell shows the arithmetic that made it; the lessons
(:mod:`qkv.viz.lessons`) add the √d_k slider and the positional encodings.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from qkv.viz.maps import AttentionKind, json_for_script, kinds_to_json

SCRIPTS = ("explorer.js", "explorer_panel.js", "explorer_lines.js", "explorer_lessons.js")


def asset(name: str) -> str:
    """The text of a file shipped beside this module (``explorer.js``, ``explorer.css``, ``*.html``)."""
    return resources.files("qkv.viz").joinpath(name).read_text(encoding="utf-8")


def scripts() -> str:
    """The explorer's JavaScript: :data:`SCRIPTS` in order (``explorer.js`` defines ``window.QKV``)."""
    return "\n".join(asset(name) for name in SCRIPTS)


def fill(template: str, **values: str) -> str:
    """Replace ``{{NAME}}`` placeholders in one pass (inserted text is never scanned for placeholders)."""
    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: values[m.group(1)], template)


def explorer_data(
    kinds: Sequence[AttentionKind],
    title: str = "",
    subtitle: str = "",
    decimals: int = 4,
    walk: dict | None = None,
    alignment_layer: int = -1,
    lessons: dict | None = None,
) -> dict:
    """The JSON document the explorer renders: ``{title, subtitle, kinds: [...], …}``.

    Args:
        walk: :func:`qkv.viz.walk.walk_data` (the arithmetic of every cell), or ``None``.
        alignment_layer: the decoder layer the alignment view opens on (0-based, negative from the end), the
            same as the alignment PNG's.
        lessons: :func:`qkv.viz.lessons.lessons_data`, or ``None``.
    """
    data = {"title": title, "subtitle": subtitle, "kinds": kinds_to_json(kinds, decimals)}
    cross = next((k for k in kinds if k.name == "cross"), None)
    if cross is not None:
        data["alignment_layer"] = alignment_layer % cross.n_layers
    if walk is not None:
        data["walk"] = walk
    if lessons is not None:
        data["lessons"] = lessons
    return data


def explorer_html(
    kinds: Sequence[AttentionKind], title: str = "Attention", subtitle: str = "", **extra
) -> str:
    """One self-contained HTML page (inline CSS, JS and data) exploring ``kinds``.

    ``extra``: ``walk``, ``alignment_layer``, ``lessons`` as for :func:`explorer_data`.

    Example:
        >>> page = explorer_html(collect_kinds(maps, labels), title="der Hund")   # doctest: +SKIP
        >>> Path("attention.html").write_text(page, encoding="utf-8")            # doctest: +SKIP
    """
    data = explorer_data(kinds, title, subtitle, **extra)
    return fill(
        asset("explorer.html"),
        TITLE=html.escape(title),
        CSS=asset("explorer.css"),
        JS=scripts(),
        DATA=json_for_script(data),
    )


def save_explorer_html(
    kinds: Sequence[AttentionKind], path: str | Path, title: str = "Attention", subtitle: str = "", **extra
) -> Path:
    """Write :func:`explorer_html` to ``path`` (UTF-8) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(explorer_html(kinds, title, subtitle, **extra), encoding="utf-8")
    return path
