"""``qkv.load(path)``: the trained object of a model folder, whatever kind it is.

- a translation checkpoint (``qkv train``) or a Hugging Face ``MarianMTModel`` folder ->
  :class:`~qkv.tasks.translation.Translator` (``translate``, ``translate_nbest``, ``attention``);
- a ``qkv classify train`` checkpoint or a Hugging Face BERT folder ->
  :class:`~qkv.tasks.text_classification.predictor.SentenceClassifier` (``predict``, ``attention``);
- a ``qkv vit train`` checkpoint or a Hugging Face ``ViTForImageClassification`` folder ->
  :class:`~qkv.tasks.image_classification.predictor.ImageClassifier` (``predict``, ``attention``).

A Hugging Face folder is opened with :func:`qkv.interop.load_pretrained` (the ``hf`` extra) as qkv's own modules.
"""

from __future__ import annotations

from pathlib import Path

import torch

from qkv.interop.hf import Pretrained, is_hf_folder, load_pretrained
from qkv.tasks.image_classification.predictor import ImageClassifier
from qkv.tasks.kinds import folder_kind, wrong_kind
from qkv.tasks.text_classification.predictor import SentenceClassifier
from qkv.tasks.translation.translator import Translator

Loaded = Translator | SentenceClassifier | ImageClassifier
_CLASSES = {"translation": Translator, "text-classifier": SentenceClassifier, "text-encoder": SentenceClassifier,
            "image-classifier": ImageClassifier}  # fmt: skip


def _is_hub_id(name: str) -> bool:
    """``owner/name`` that is no local path: ``runs/best`` beside an existing ``runs/`` folder, or a path of more
    parts, is a local folder that is not there ("not found"), not a hub id."""
    path = Path(name)
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not path.exists() and \
        not path.parent.exists()


def from_pretrained(pretrained: Pretrained, device: str | torch.device = "cpu") -> Loaded:
    """The qkv object of a Hugging Face model opened by :func:`qkv.interop.load_pretrained`."""
    if pretrained.kind == "translation":
        return Translator(pretrained.model, pretrained.tokenizers, device)
    if pretrained.kind in ("text-classifier", "text-encoder"):
        return SentenceClassifier(pretrained.model, pretrained.tokenizer, pretrained.labels, device,
                                  trained_head=pretrained.kind == "text-classifier")  # fmt: skip
    return ImageClassifier(pretrained.model, pretrained.labels, pretrained.image, device)


def load(path: str | Path, device: str | torch.device = "cpu", *, kind: str | tuple[str, ...] | None = None) -> Loaded:
    """Open a model folder as the object that uses it: a :class:`Translator`, a :class:`SentenceClassifier` or
    an :class:`ImageClassifier`.

    Args:
        path: a checkpoint folder written by ``qkv train`` / ``classify train`` / ``vit train`` (e.g.
            ``runs/de-en/best``), a Hugging Face ``save_pretrained`` folder of Marian, BERT or ViT, or a hub id
            such as ``"Helsinki-NLP/opus-mt-de-en"`` (where the machine reaches the hub).
        device: where the model runs (``"cpu"``, ``"cuda"``, a ``torch.device``).
        kind: refuse any other kind (``"translation"``, ``"text-classifier"``, ``"text-encoder"``,
            ``"image-classifier"``, or a tuple of them) with one line naming what the folder holds.

    Raises:
        FileNotFoundError: no such folder (and no such hub id).
        ValueError: a corrupt or mismatched checkpoint, a tokenizer larger than the model's vocabulary, a
            folder of the wrong ``kind``, or a Hugging Face model qkv cannot reproduce exactly (one line each).

    Example:
        >>> import qkv
        >>> tr = qkv.load("runs/de-en/best")                     # doctest: +SKIP
        >>> tr.translate("Ein Hund läuft im Park.")               # doctest: +SKIP
        'A dog runs in the park.'
        >>> qkv.load("runs/sst2").predict("a gripping , funny film")   # doctest: +SKIP
        Prediction(label='positive', probability=0.93, probabilities={'negative': 0.07, 'positive': 0.93})
    """
    wanted = (kind,) if isinstance(kind, str) else kind
    if not Path(path).exists() and _is_hub_id(str(path)):
        loaded = from_pretrained(load_pretrained(path), device)  # fetched first: its kind is known after
        if wanted is not None and loaded.kind not in wanted:
            raise wrong_kind(path, loaded.kind, wanted)
        return loaded
    found = folder_kind(path)
    if wanted is not None and found not in wanted:
        raise wrong_kind(path, found, wanted)
    if is_hf_folder(path):
        return from_pretrained(load_pretrained(path), device)
    return _CLASSES[found].load(path, device=device)
