"""A trained sentence classifier with its tokenizer: sentences in, labels and probabilities (and maps) out.

The object :func:`qkv.load` returns for a ``qkv classify train`` checkpoint or a Hugging Face BERT folder.
Legend: N sentences, C classes, T tokens, L layers, H heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

import torch
from torch import Tensor, nn

from qkv.data.tokenizer import TokenizerFile
from qkv.tasks.kinds import check_vocab_fits, expect_kind
from qkv.tasks.predictions import EncoderAttentionView, Prediction, labels_for, predictions
from qkv.tasks.text_classification.classify import encode, predict_logits
from qkv.train.checkpoint import load_checkpoint


class SentenceClassifier:
    """Classify sentences with a :class:`~qkv.models.classifier.TextClassifier` and its tokenizer.

    A ``str`` is one sentence and gives one :class:`~qkv.tasks.predictions.Prediction`; a list gives a list.

    Args:
        model: the classifier (token ids ``(B, T)`` -> logits ``(B, C)``).
        tokenizer: its tokenizer (``encode_batch``, ``tokens``); no more ids than the model's vocabulary.
        labels: class names by id (default ``"0"``, ``"1"``, …).
        device: where the model runs.
        trained_head: ``False`` for an encoder whose head was never trained (MLM pre-training, ``BertModel``):
            :meth:`attention` works, :meth:`predict` is refused.

    Example:
        >>> clf = SentenceClassifier.load("runs/sst2")                           # doctest: +SKIP
        >>> clf.predict("a gripping , funny film").label                         # doctest: +SKIP
        'positive'
        >>> [p.probability for p in clf.predict(["a dull mess", "moving"])]      # doctest: +SKIP
        [0.91, 0.87]
    """

    kind = "text-classifier"

    def __init__(
        self, model: nn.Module, tokenizer: Any, labels: Sequence[str] | None = None,
        device: str | torch.device = "cpu", *, trained_head: bool = True,
    ) -> None:  # fmt: skip
        config = model.config
        check_vocab_fits(tokenizer, config.vocab_size, "tokenizer")
        self.labels = labels_for(labels, config.n_classes, type(model).__name__)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.trained_head = trained_head
        if not trained_head:
            self.kind = "text-encoder"

    @classmethod
    def load(cls, checkpoint: str | Path, device: str | torch.device = "cpu") -> SentenceClassifier:
        """Load a folder written by ``qkv classify train`` (or ``pretrain``: then for the maps only)."""
        kind = expect_kind(checkpoint, ("text-classifier", "text-encoder"))
        loaded = load_checkpoint(checkpoint, device=device)
        try:
            return cls(loaded.model, TokenizerFile.load(loaded.path), loaded.config.get("labels"), device,
                       trained_head=kind == "text-classifier")  # fmt: skip
        except ValueError as err:
            raise ValueError(f"{loaded.path}: {err}") from None

    def encode(self, sentences: Sequence[str]) -> list[list[int]]:
        """Token ids per sentence, as the model reads them (truncated to its ``max_len``; [CLS] is the model's)."""
        return encode(self.tokenizer, list(sentences), self.model.config.max_len)

    def tokens(self, sentence: str) -> list[str]:
        """The labels of the positions the encoder sees: ``[CLS]`` (with [CLS] pooling), then the subwords."""
        ids = self.encode([sentence])[0]
        shown = self.tokenizer.tokens(sentence)[: len(ids)]
        if len(shown) != len(ids):  # e.g. an empty sentence, read as [UNK]
            shown = [self.tokenizer.id_to_token(i) for i in ids]
        return (["[CLS]"] if getattr(self.model, "cls", None) is not None else []) + shown

    def probabilities(self, sentences: Sequence[str], batch_size: int = 256) -> Tensor:
        """Class probabilities ``(N, C)`` (the softmax of the logits), in input order."""
        self._check_head()
        return predict_logits(self.model, self.encode(sentences), batch_size=batch_size).softmax(-1)

    @overload
    def predict(self, sentences: str, batch_size: int = 256) -> Prediction: ...
    @overload
    def predict(self, sentences: Sequence[str], batch_size: int = 256) -> list[Prediction]: ...

    def predict(self, sentences: str | Sequence[str], batch_size: int = 256) -> Prediction | list[Prediction]:
        """The label and probabilities of one sentence (a ``str``) or of each sentence of a list."""
        if isinstance(sentences, str):
            return self.predict([sentences], batch_size)[0]
        sentences = list(sentences)
        if not sentences:
            return []
        return predictions(self.probabilities(sentences, batch_size), self.labels)

    @torch.no_grad()  # not inference_mode: the inputs it returns may be read again under autograd
    def attention(self, sentence: str) -> EncoderAttentionView:
        """Every self-attention map of ``sentence`` ``L × (1, H, N, N)`` with its position labels."""
        ids = torch.tensor([self.encode([sentence])[0]], device=self.device)  # (1, T)
        logits, maps = self.model(ids, return_attention=True)  # (1, C), L × (1, H, N, N)
        prediction = predictions(logits.softmax(-1), self.labels)[0] if self.trained_head else None
        return EncoderAttentionView(self.tokens(sentence), [m.float().cpu() for m in maps], ids.cpu(), prediction)

    def _check_head(self) -> None:
        if not self.trained_head:
            raise ValueError(
                "this text encoder has no trained classification head (MLM pre-training or a BertModel): "
                "it opens for attention and explain only; fine-tune it with `qkv classify train --init`"
            )
