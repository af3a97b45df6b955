"""What the encoder-only classifiers share: :class:`~qkv.models.classifier.TextClassifier` and
:class:`~qkv.models.vit.ViT` are both "embed the inputs, prepend [CLS], add positions, run the encoder of §3.1,
classify one pooled vector".

Legend: B batch, T input positions (tokens or patches), N = T (+1 with [CLS]), D d_model, H heads, C classes.

    x = EmbedInputs(inputs)                        (B, T, D)   tokens (TokenEmbedding) or patches (PatchEmbedding)
    z_0 = Dropout(Positions([x_cls; x]))           (B, N, D)   a learned [CLS] vector, if the model has one
    h = Encoder(z_0)                               (B, N, D)   qkv.models.transformer.Encoder, unchanged
    logits = Classify(h)                           (B, C)      e.g. a Linear map of h[:, 0] ([CLS])

Here: :class:`EncoderClassifier` (the shared ``encode`` / ``forward(return_attention=)``), :func:`prepend_cls`,
the config check :func:`check_encoder_config` (presets: :func:`qkv.config.config_preset`) and :func:`build_encoder`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from qkv.config import ConfigError, check_fractions, check_positive_ints
from qkv.models.transformer import Encoder, layer_kwargs
from qkv.nn.feedforward import ACTIVATIONS

DROPOUTS = ("dropout", "attention_dropout", "activation_dropout")
ENCODER_CHOICES: dict[str, tuple[str, ...]] = {"activation": tuple(ACTIVATIONS), "norm": ("post", "pre")}


# -- configs -----------------------------------------------------------------------------------------------
def check_encoder_config(config: Any, positive: Iterable[str], choices: Mapping[str, Iterable[str]] = ()) -> None:
    """Validate the encoder fields of a config dataclass, raising :class:`~qkv.config.ConfigError`.

    Checks that the ``positive`` fields are positive ints, ``d_model % n_heads == 0``, the dropouts
    (:data:`DROPOUTS`) lie in [0, 1), and ``activation``/``norm`` (plus the extra ``choices``) are allowed values.
    """
    check_positive_ints(config, positive)
    if config.d_model % config.n_heads:
        raise ConfigError(f"d_model ({config.d_model}) must be divisible by n_heads ({config.n_heads})")
    check_fractions(config, DROPOUTS)
    for name, allowed in {**ENCODER_CHOICES, **dict(choices)}.items():
        allowed = tuple(allowed)
        if getattr(config, name) not in allowed:
            raise ConfigError(f"{name} must be one of {allowed}, got {getattr(config, name)!r}")


def build_encoder(config: Any) -> Encoder:
    """The encoder stack of §3.1 (:class:`~qkv.models.transformer.Encoder`) sized by an encoder-only config.

    Pre-LN (``norm="pre"``, flagged option) ends the stack in a final LayerNorm.
    """
    return Encoder(config.n_layers, **layer_kwargs(config))


# -- the model -------------------------------------------------------------------------------------------
def prepend_cls(cls: Tensor, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Put the learned [CLS] vector ``cls`` ``(1, 1, D)`` in front of every sequence of ``x`` ``(B, T, D)``.

    Returns ``x`` ``(B, 1 + T, D)`` and the key mask ``(B, 1, 1, T)`` extended to ``(B, 1, 1, 1 + T)`` with
    [CLS] always a real key (``None`` stays ``None``: every position attends everywhere).
    """
    x = torch.cat([cls.expand(x.shape[0], 1, -1), x], dim=1)  # (B, 1 + T, D)
    if mask is not None:
        cls_key = torch.ones_like(mask[..., :1])  # (B, 1, 1, 1)
        mask = torch.cat([cls_key, mask], dim=-1)  # (B, 1, 1, 1 + T)
    return x, mask


class EncoderClassifier(nn.Module):
    """Base class: ``encode`` = embed -> [CLS] -> positions -> dropout -> encoder; ``forward`` = encode -> classify.

    A subclass sets ``config``, ``cls`` (an ``nn.Parameter`` ``(1, 1, D)``, or ``None`` for no [CLS]),
    ``embed_dropout`` and ``encoder`` (:func:`build_encoder`), and defines

    - ``embed_inputs(inputs) -> (x (B, T, D), key mask (B, 1, 1, T) or None)`` (checks the input too),
    - ``add_positions(x) -> (B, N, D)``,
    - ``classify(h, mask) -> logits (B, C)``.

    Shape:
        - ``encode`` -> final states ``(B, N, D)``, the key mask ``(B, 1, 1, N)`` (or ``None``) and the list of
          L encoder maps ``(B, H, N, N)`` (empty unless ``return_attention``).
        - ``forward`` -> logits ``(B, C)``; with ``return_attention=True`` also the list of maps.
    """

    cls: nn.Parameter | None
    embed_dropout: nn.Module
    encoder: Encoder

    def embed_inputs(self, inputs: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def add_positions(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def classify(self, h: Tensor, mask: Tensor | None) -> Tensor:
        raise NotImplementedError

    def encode(self, inputs: Tensor, return_attention: bool = False):
        """Final encoder states ``(B, N, D)``, the key mask ``(B, 1, 1, N)`` or ``None``, and the maps."""
        x, mask = self.embed_inputs(inputs)  # (B, T, D)
        if self.cls is not None:
            x, mask = prepend_cls(self.cls, x, mask)  # (B, N, D), N = 1 + T
        x = self.embed_dropout(self.add_positions(x))  # (B, N, D)
        h, maps = self.encoder(x, mask, need_weights=return_attention)  # (B, N, D)
        return h, mask, maps

    def forward(self, inputs: Tensor, return_attention: bool = False):
        """Logits ``(B, C)`` (and the list of L encoder maps ``(B, H, N, N)`` with ``return_attention``)."""
        h, mask, maps = self.encode(inputs, return_attention)
        logits = self.classify(h, mask)  # (B, C)
        return (logits, maps) if return_attention else logits

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
