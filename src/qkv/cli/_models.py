"""Opening ``--model`` for a command: a qkv checkpoint or a Hugging Face folder, through :func:`qkv.load`."""

from __future__ import annotations


def load_translator(model: str | None, device: str = "cpu", precision: str = "fp32"):
    """``(translator, description, untrained)`` for a checkpoint or Hugging Face Marian folder, or the seeded
    demo when ``None``; a folder of another kind is refused in one line naming what it holds."""
    if model is None:
        from qkv.viz.serve import demo_translator

        return demo_translator(), "untrained seeded demo model (tiny preset, dates task vocabulary)", True
    translator = open_model(model, device, "translation", precision=precision)
    return translator, describe(model, translator.model), False


def open_model(path: str, device: str, kind: str | tuple[str, ...] | None = None, precision: str = "fp32"):
    """:func:`qkv.load` for a command: the object of ``path`` (checkpoint or Hugging Face folder), of ``kind``;
    a translator decodes in ``precision`` (see :mod:`qkv.train.precision`, int8: :mod:`qkv.decode.quantize`)."""
    from qkv.cli._common import resolve_device
    from qkv.tasks.load import load
    from qkv.tasks.translation.translator import resolve_decode_precision

    loaded = load(path, resolve_device(device), kind=kind)
    if loaded.kind == "translation":
        loaded.precision = resolve_decode_precision(precision, loaded.device)
    return loaded


def describe(path: str, model) -> str:
    """``"PATH (Transformer, 1,234 parameters)"`` for the pages and printouts."""
    n = sum(p.numel() for p in model.parameters())
    return f"{path} ({type(model).__name__}, {n:,} parameters)"
