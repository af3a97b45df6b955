"""What a model folder holds, by kind, so that a command given the wrong one says so in one line.

A folder is a qkv checkpoint (its ``config.json`` names an ``arch``, see :mod:`qkv.models.registry`) or a Hugging
Face model folder (``architectures``, see :mod:`qkv.interop.hf`). Either way it is one of four kinds:

- ``"translation"``: an encoder-decoder (Transformer, RNN baselines, Marian), opened as a
  :class:`~qkv.tasks.translation.Translator`;
- ``"text-classifier"``: a [CLS] classifier (``qkv classify train``, BERT for sequence classification);
- ``"text-encoder"``: the same encoder with an untrained head (``qkv classify pretrain``, ``BertModel``), for the
  attention views only;
- ``"image-classifier"``: a ViT (``qkv vit train``, ``ViTForImageClassification``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qkv.interop.hf import ARCHITECTURES, is_hf_folder
from qkv.models.registry import SEQ2SEQ_ARCHS
from qkv.train.checkpoint import CheckpointError, read_config

KINDS = ("translation", "text-classifier", "text-encoder", "image-classifier")

#: in words, and the commands that open each kind
DESCRIPTIONS = {
    "translation": ("a translation model", "qkv translate / evaluate / attention / explain / serve"),
    "text-classifier": ("a text classifier", "qkv classify predict, qkv attention, qkv explain"),
    "text-encoder": ("a text encoder without a trained head", "qkv attention, qkv explain"),
    "image-classifier": ("an image classifier (ViT)", "qkv vit attention"),
}


def kind_of_config(config: dict[str, Any], where: str) -> str:
    """The kind of a qkv checkpoint from its ``config.json`` contents (``arch``, and ``task`` for MLM)."""
    arch = config.get("arch", "transformer")
    if arch in SEQ2SEQ_ARCHS:
        return "translation"
    if arch == "classifier":
        return "text-encoder" if config.get("task") == "mlm" else "text-classifier"
    if arch == "vit":
        return "image-classifier"
    raise CheckpointError(f"{where}: unknown arch {arch!r}; known: {', '.join((*SEQ2SEQ_ARCHS, 'classifier', 'vit'))}")


def folder_kind(path: str | Path) -> str:
    """The kind of a qkv checkpoint folder or a Hugging Face model folder.

    Raises:
        FileNotFoundError: no such folder, or no ``config.json`` in it.
        ValueError: the folder is neither (or of an architecture qkv does not open).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {folder}")
    if is_hf_folder(folder):
        config = read_config(folder)
        known = [a for a in config.get("architectures") or [] if a in ARCHITECTURES]
        if not known:
            got = ", ".join(config.get("architectures") or []) or "none"
            raise ValueError(f"{folder}: architectures: qkv opens {', '.join(ARCHITECTURES)}; got {got}")
        return ARCHITECTURES[known[0]][1]
    return kind_of_config(read_config(folder), str(folder / "config.json"))


def wrong_kind(path: str | Path, kind: str, wanted: str | tuple[str, ...]) -> ValueError:
    """The one-line error for a folder of ``kind`` given where ``wanted`` was expected."""
    wanted = (wanted,) if isinstance(wanted, str) else wanted
    what, commands = DESCRIPTIONS[kind]
    expected = " or ".join(DESCRIPTIONS[w][0] for w in wanted)
    return ValueError(f"{path} is {what}, not {expected}: open it with {commands}")


def expect_kind(path: str | Path, wanted: str | tuple[str, ...]) -> str:
    """The kind of the folder ``path``; a :func:`wrong_kind` error unless it is one of ``wanted``."""
    kind = folder_kind(path)
    if kind not in ((wanted,) if isinstance(wanted, str) else wanted):
        raise wrong_kind(path, kind, wanted)
    return kind


def check_vocab_fits(tokenizer: Any, model_vocab: int | None, what: str) -> None:
    """Refuse a tokenizer with more ids than the model's embedding has rows (it would fail deep inside the model,
    at the first id past the end): the two do not belong together."""
    n = getattr(tokenizer, "vocab_size", None)
    if model_vocab is not None and isinstance(n, int) and n > model_vocab:
        raise ValueError(
            f"the {what} has {n} ids but the model's vocabulary has {model_vocab}: "
            "they do not belong together (a tokenizer from another run?)"
        )
