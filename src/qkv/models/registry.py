"""Architectures by name: how a checkpoint's ``arch`` becomes a model again, and which ``arch`` a model has.

``SEQ2SEQ_ARCHS`` are the translation models; ``ARCHS`` adds the encoder-only classifiers ("classifier":
:class:`~qkv.models.classifier.TextClassifier`, which MLM pre-training also saves, and "vit":
:class:`~qkv.models.vit.ViT`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from qkv.config import ConfigError

SEQ2SEQ_ARCHS = ("transformer", "rnn", "rnn-attention")
ARCHS = (*SEQ2SEQ_ARCHS, "classifier", "vit")


def build_model(arch: str, config: dict[str, Any]) -> nn.Module:
    """Build a model from its architecture name and config dict (as stored in a checkpoint)."""
    if arch == "transformer":
        from qkv.models.transformer import Transformer, TransformerConfig

        return Transformer(TransformerConfig.from_dict(config))
    if arch in ("rnn", "rnn-attention"):
        from qkv.models.rnn import RNNConfig, build_rnn

        return build_rnn(RNNConfig.from_dict({**config, "arch": arch}))
    if arch == "classifier":
        from qkv.models.classifier import ClassifierConfig, TextClassifier

        return TextClassifier(ClassifierConfig.from_dict(config))
    if arch == "vit":
        from qkv.models.vit import ViT, ViTConfig

        return ViT(ViTConfig.from_dict(config))
    raise ConfigError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")


def model_arch(model: nn.Module) -> str:
    """The ``arch`` name under which :func:`build_model` rebuilds ``model``."""
    from qkv.models.classifier import TextClassifier
    from qkv.models.transformer import Transformer
    from qkv.models.vit import ViT

    if isinstance(model, Transformer):
        return "transformer"
    if isinstance(model, TextClassifier):
        return "classifier"
    if isinstance(model, ViT):
        return "vit"
    arch = getattr(model.config, "arch", None)
    if arch in SEQ2SEQ_ARCHS:
        return arch
    raise ConfigError(f"{type(model).__name__} is not a known architecture; known: {', '.join(ARCHS)}")
