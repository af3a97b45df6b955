"""Sequence-to-sequence architectures by name: how a checkpoint's ``arch`` becomes a model again."""

from __future__ import annotations

from typing import Any

from torch import nn

from qkv.config import ConfigError

SEQ2SEQ_ARCHS = ("transformer", "rnn", "rnn-attention")


def build_model(arch: str, config: dict[str, Any]) -> nn.Module:
    """Build a translation model from its architecture name and config dict (as stored in a checkpoint)."""
    if arch == "transformer":
        from qkv.config import TransformerConfig
        from qkv.models.transformer import Transformer

        return Transformer(TransformerConfig.from_dict(config))
    if arch in ("rnn", "rnn-attention"):
        from qkv.models.rnn import RNNConfig, build_rnn

        return build_rnn(RNNConfig.from_dict({**config, "arch": arch}))
    raise ConfigError(f"unknown architecture {arch!r}; known: {', '.join(SEQ2SEQ_ARCHS)}")


def model_arch(model: nn.Module) -> str:
    """The ``arch`` name under which :func:`build_model` rebuilds ``model``."""
    from qkv.models.transformer import Transformer

    if isinstance(model, Transformer):
        return "transformer"
    arch = getattr(model.config, "arch", None)
    if arch in SEQ2SEQ_ARCHS:
        return arch
    raise ConfigError(f"{type(model).__name__} is not a known sequence-to-sequence architecture")
