"""A self-contained HTML attention explorer, in the spirit of bertviz's head and model views.

One file, no network: the CSS and JavaScript (``explorer.css``, ``explorer.js`` beside this module) are
inlined and the maps are inline JSON. Flip through kinds, layers and heads, see every layer × head at once,
hover a cell for the token pair and its weight, and (with cross-attention) see the source–target alignment.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from qkv.viz.maps import AttentionKind, json_for_script, kinds_to_json


def asset(name: str) -> str:
    """The text of a file shipped beside this module (``explorer.js``, ``explorer.css``, ``*.html``)."""
    return resources.files("qkv.viz").joinpath(name).read_text(encoding="utf-8")


def fill(template: str, **values: str) -> str:
    """Replace ``{{NAME}}`` placeholders in one pass (inserted text is never scanned for placeholders)."""
    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: values[m.group(1)], template)


def explorer_data(
    kinds: Sequence[AttentionKind], title: str = "", subtitle: str = "", decimals: int = 4
) -> dict:
    """The JSON document the explorer renders: ``{title, subtitle, kinds: [...]}``."""
    return {"title": title, "subtitle": subtitle, "kinds": kinds_to_json(kinds, decimals)}


def explorer_html(kinds: Sequence[AttentionKind], title: str = "Attention", subtitle: str = "") -> str:
    """One self-contained HTML page (inline CSS, JS and data) exploring ``kinds``.

    Example:
        >>> page = explorer_html(collect_kinds(maps, labels), title="der Hund")   # doctest: +SKIP
        >>> Path("attention.html").write_text(page, encoding="utf-8")            # doctest: +SKIP
    """
    data = explorer_data(kinds, title, subtitle)
    return fill(
        asset("explorer.html"),
        TITLE=html.escape(title),
        CSS=asset("explorer.css"),
        JS=asset("explorer.js"),
        DATA=json_for_script(data),
    )


def save_explorer_html(
    kinds: Sequence[AttentionKind], path: str | Path, title: str = "Attention", subtitle: str = ""
) -> Path:
    """Write :func:`explorer_html` to ``path`` (UTF-8) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(explorer_html(kinds, title, subtitle), encoding="utf-8")
    return path
