"""Open a pretrained Hugging Face model as a qkv model: :func:`load_pretrained`.

A folder written by ``save_pretrained`` (or a hub id such as ``Helsinki-NLP/opus-mt-de-en``, fetched with
``huggingface_hub`` when the machine can reach the hub) of

- ``MarianMTModel`` (OPUS-MT) -> a :class:`qkv.Transformer` and a :class:`~qkv.data.tokenizer.TokenizerPair`
  of :class:`~qkv.interop.hf_tokenizers.MarianSentencePiece` (kind ``"translation"``);
- ``BertForSequenceClassification`` -> a :class:`~qkv.models.classifier.TextClassifier` and a
  :class:`~qkv.interop.hf_tokenizers.WordPieceTokenizer` (kind ``"text-classifier"``); ``BertModel`` (and the
  encoder of ``BertForMaskedLM`` / ``BertForPreTraining``, e.g. ``bert-base-uncased``) the same with an untrained
  all-zero head, for the attention views only (kind ``"text-encoder"``, ``labels`` is ``None``);
- ``ViTForImageClassification`` -> a :class:`~qkv.models.vit.ViT` (kind ``"image-classifier"``).

The models are qkv's own modules with the weights copied in (see :mod:`~qkv.interop.hf_marian`,
:mod:`~qkv.interop.hf_bert`, :mod:`~qkv.interop.hf_vit` for the mapping and the flagged options each needs).
Whatever qkv cannot reproduce exactly is refused with one :class:`~qkv.interop.common.HFImportError` line naming
the folder and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from qkv.interop.common import fail, read_json, require

KINDS = ("translation", "text-classifier", "text-encoder", "image-classifier")
ARCHITECTURES = {
    "MarianMTModel": ("marian", "translation"),
    "BertForSequenceClassification": ("bert", "text-classifier"),
    "BertModel": ("bert", "text-encoder"),
    "BertForMaskedLM": ("bert", "text-encoder"),  # e.g. bert-base-uncased: the encoder (the MLM head is left out)
    "BertForPreTraining": ("bert", "text-encoder"),
    "ViTForImageClassification": ("vit", "image-classifier"),
}
_HUB_FILES = ["*.json", "*.safetensors", "*.spm", "vocab.txt", "pytorch_model.bin"]


@dataclass
class Pretrained:
    """A Hugging Face model opened as a qkv model.

    Attributes:
        kind: ``"translation"``, ``"text-classifier"``, ``"text-encoder"`` or ``"image-classifier"``.
        model: the qkv model, in eval mode.
        tokenizers: source and target tokenizers (translation).
        tokenizer: the text tokenizer (BERT).
        labels: class names by id (classifiers; from the config's ``id2label``).
        image: preprocessing of the images (ViT): ``size``, ``mean``, ``std``, ``rescale`` from
            ``preprocessor_config.json`` (pixels ``(x · rescale − mean) / std`` at ``size`` × ``size``).
        architecture: the Hugging Face class name, e.g. ``"MarianMTModel"``.
        path: the folder it was read from.
    """

    kind: str
    model: nn.Module
    architecture: str
    path: Path
    tokenizers: Any = None
    tokenizer: Any = None
    labels: list[str] | None = None
    image: dict[str, Any] = field(default_factory=dict)


def is_hf_folder(path: str | Path) -> bool:
    """Whether ``path`` is a Hugging Face model folder (``config.json`` with ``model_type``, not a qkv checkpoint
    folder, whose ``config.json`` has ``arch``)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        raw = read_json(Path(path), "config.json")
    except ValueError:
        return False
    return "arch" not in raw and ("model_type" in raw or "architectures" in raw)


def resolve(path_or_hub_id: str | Path) -> Path:
    """A local folder as it is, else a hub id fetched into the Hugging Face cache (``HF_HUB_OFFLINE=1``: the
    cache only). Only the files qkv reads are fetched (no TensorFlow/Flax/Rust weights)."""
    path = Path(path_or_hub_id)
    if path.is_dir():
        return path
    name = str(path_or_hub_id)
    if path.exists() or name.count("/") > 1 or name.startswith((".", "/")):
        fail(name, "path", "not a folder")
    hub = require("huggingface_hub", "fetching a model from the Hugging Face hub")
    try:
        return Path(hub.snapshot_download(name, allow_patterns=_HUB_FILES))
    except Exception as err:  # offline, unknown repo, network: many exception kinds, one line for the user
        fail(name, "path", f"not a local folder, and the hub gave no model of that id ({str(err).splitlines()[0]})")


def _architecture(folder: Path, raw: dict[str, Any]) -> str:
    names = raw.get("architectures") or []
    known = [n for n in names if n in ARCHITECTURES]
    if not known:
        got = ", ".join(names) if names else f"none (model_type {raw.get('model_type')!r})"
        fail(folder, "architectures", f"qkv opens {', '.join(ARCHITECTURES)}; got {got}")
    arch = known[0]
    if raw.get("model_type") != ARCHITECTURES[arch][0]:
        fail(folder, "model_type", f"{arch} needs model_type {ARCHITECTURES[arch][0]!r}, got {raw.get('model_type')!r}")
    return arch


def load_pretrained(path_or_hub_id: str | Path) -> Pretrained:
    """Open a Hugging Face model folder (or hub id) as the corresponding qkv model with its tokenizer(s).

    Args:
        path_or_hub_id: a ``save_pretrained`` folder, or a hub id such as ``"Helsinki-NLP/opus-mt-de-en"``.

    Returns:
        A :class:`Pretrained`; e.g. for Marian ``Translator(p.model, p.tokenizers)`` translates text.

    Raises:
        HFImportError: (a ``ValueError``) unsupported architecture, missing tokenizer or weights, mismatched
            shapes, or a config field qkv cannot honour; the message names the folder and the field.
        MissingExtraError: transformers / sentencepiece missing (``pip install 'qkv[hf]'``).

    Example:
        >>> p = load_pretrained("Helsinki-NLP/opus-mt-de-en")            # doctest: +SKIP
        >>> Translator(p.model, p.tokenizers).translate(["Ein Hund."])  # doctest: +SKIP
        ['A dog.']
    """
    folder = resolve(path_or_hub_id)
    raw = read_json(folder, "config.json")
    if "arch" in raw:
        fail(folder, "config.json", "this is a qkv checkpoint folder, not a Hugging Face one: open it with qkv.load")
    arch = _architecture(folder, raw)
    kind = ARCHITECTURES[arch][1]
    if kind == "translation":
        from qkv.interop.hf_marian import load_marian

        model, pair = load_marian(folder, raw)
        return Pretrained(kind, model, arch, folder, tokenizers=pair)
    if arch.startswith("Bert"):
        from qkv.interop.hf_bert import load_bert

        model, tokenizer, labels = load_bert(folder, raw, with_head=kind == "text-classifier")
        return Pretrained(kind, model, arch, folder, tokenizer=tokenizer, labels=labels)
    from qkv.interop.hf_vit import load_vit

    model, labels, image = load_vit(folder, raw)
    return Pretrained(kind, model, arch, folder, labels=labels, image=image)
