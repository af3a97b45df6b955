"""What the classifier objects return: a :class:`Prediction` per input, an :class:`EncoderAttentionView` per map.

Legend: C classes, L layers, H heads, N positions the encoder sees ([CLS] + tokens or patches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class Prediction:
    """The class a model gives one input, with its probability and those of every class.

    Example:
        >>> Prediction("positive", 0.9, {"negative": 0.1, "positive": 0.9}).label
        'positive'
    """

    label: str
    probability: float
    probabilities: dict[str, float]


def predictions(probs: Tensor, labels: Sequence[str]) -> list[Prediction]:
    """One :class:`Prediction` per row of the probabilities ``(N, C)`` (the softmax of the logits)."""
    out = []
    for row in probs.float().cpu().tolist():
        k = max(range(len(row)), key=row.__getitem__)
        out.append(Prediction(labels[k], row[k], dict(zip(labels, row))))
    return out


@dataclass
class EncoderAttentionView:
    """Every encoder self-attention map of one input, the labels of its positions, and the model's answer.

    Attributes:
        tokens: the N position labels (``[CLS]`` then the subwords, or ``cls``, ``p0``, ``p1``, … for patches).
        maps: L tensors ``(1, H, N, N)`` (row = query, column = key; each row sums to 1).
        inputs: what the model read, batch size 1: token ids ``(1, T)`` or the preprocessed image ``(1, C, S, S)``.
        prediction: the model's :class:`Prediction` (``None`` for an encoder without a trained head).
    """

    tokens: list[str]
    maps: list[Tensor]
    inputs: Tensor
    prediction: Prediction | None


def labels_for(labels: Sequence[str] | None, n_classes: int, where: str) -> list[str]:
    """``labels`` as a list of ``n_classes`` names (default ``"0"``, ``"1"``, …), refusing a wrong count."""
    if not labels:
        return [str(i) for i in range(n_classes)]
    if len(labels) != n_classes:
        raise ValueError(f"{where}: {len(labels)} labels for a model of {n_classes} classes")
    return [str(label) for label in labels]
