"""The masked-language-model head of BERT's pre-training (Devlin et al. 2019, §3.1 "Task #1: Masked LM").

Legend: B batch, T tokens, N = T (+1 with [CLS]), D d_model, V vocabulary, M chosen positions.

A :class:`MaskedLanguageModel` reads a :class:`~qkv.models.classifier.TextClassifier`'s encoder and predicts a
token at the chosen positions through :class:`MLMHead`, whose output matrix is the (tied) token embedding.
The recipe (masking, the loss, the loop) is :mod:`qkv.tasks.text_classification.mlm`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.config import ConfigError
from qkv.models.classifier import TextClassifier


class MLMHead(nn.Module):
    """BERT's MLM output layer: Linear + GELU + LayerNorm, then a projection to the vocabulary.

    The projection shares its weight with the token embedding (weight tying, §3.4) and has its own bias.

    Shape:
        ``(B, T, D) -> (B, T, V)``.
    """

    def __init__(self, embedding_weight: nn.Parameter, eps: float = 1e-5) -> None:
        super().__init__()
        vocab_size, d_model = embedding_weight.shape
        self.transform = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model, eps=eps)
        self.weight = embedding_weight  # tied (§3.4): not a new parameter
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, h: Tensor) -> Tensor:
        h = self.norm(F.gelu(self.transform(h)))  # (B, T, D)
        return F.linear(h, self.weight, self.bias)  # (B, T, V)


class MaskedLanguageModel(nn.Module):
    """A :class:`TextClassifier`'s encoder with an :class:`MLMHead`: predicts the tokens at every position.

    The classifier's config must have a ``mask_id``. The head reads the states of the word positions (the
    [CLS] position, if any, is dropped).

    Shape:
        inputs ``(B, T)`` -> logits ``(B, T, V)``.
    """

    def __init__(self, classifier: TextClassifier) -> None:
        super().__init__()
        if classifier.config.mask_id is None:
            raise ConfigError("MLM pre-training needs a ClassifierConfig with mask_id set (an id for [MASK])")
        self.classifier = classifier
        self.head = MLMHead(classifier.embed.weight, classifier.config.eps)

    def forward(self, inputs: Tensor, chosen: Tensor | None = None) -> Tensor:
        """Logits ``(B, T, V)`` at every position, or ``(M, V)`` at the M positions where ``chosen`` is True.

        Projecting only the chosen positions (15%) to the vocabulary saves most of the cost of the head.
        """
        h, _, _ = self.classifier.encode(inputs)  # (B, N, D)
        if self.classifier.cls is not None:
            h = h[:, 1:]  # (B, T, D): drop [CLS]
        if chosen is not None:
            h = h[chosen]  # (M, D)
        return self.head(h)  # (B, T, V) or (M, V)
