"""Model configuration: frozen, typed, validated on construction; unknown options fail loudly."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


def config_from_dict(cls: type, data: dict[str, Any], where: str = "config"):
    """Build a config dataclass from a dict, refusing keys the dataclass does not have."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} option(s) in {where}: {unknown}; known: {sorted(names)}")
    return cls(**data)


class ConfigMixin:
    """``from_dict`` / ``to_dict`` / ``replace`` for the frozen config dataclasses (unknown keys refused)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> Self:
        return config_from_dict(cls, data, where=where)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def replace(self, **changes: Any) -> Self:
        return config_from_dict(type(self), {**self.to_dict(), **changes})


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python, not to us


def is_number(value: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition``."""
    if not condition:
        raise ConfigError(message)


def check_positive_ints(config: Any, names: Iterable[str]) -> None:
    """Raise :class:`ConfigError` unless every field ``names`` of ``config`` is a positive int (not a bool)."""
    for name in names:
        value = getattr(config, name)
        check(is_int(value) and value > 0, f"{name} must be a positive int, got {value!r}")


def check_fractions(config: Any, names: Iterable[str]) -> None:
    """Raise :class:`ConfigError` unless every field ``names`` of ``config`` (dropouts) is a number in [0, 1)."""
    for name in names:
        value = getattr(config, name)
        check(is_number(value) and 0.0 <= value < 1.0, f"{name} must be a number in [0, 1), got {value!r}")


def config_preset(cls: type, presets: Mapping[str, dict[str, Any]], name: str, overrides: dict[str, Any], what: str):
    """``cls`` built from the preset ``presets[name]`` updated with ``overrides`` (unknown keys refused)."""
    if name not in presets:
        raise ConfigError(f"unknown {what} preset {name!r}; presets: {sorted(presets)}")
    return config_from_dict(cls, {**presets[name], **overrides}, where=f"preset {name!r}")


PRESETS: dict[str, dict[str, Any]] = {
    # Table 3 of the paper.
    "base": dict(d_model=512, n_heads=8, d_ff=2048, n_layers=6, dropout=0.1),
    "big": dict(d_model=1024, n_heads=16, d_ff=4096, n_layers=6, dropout=0.3),
    # For CPUs: a small model that trains on Multi30k in minutes, and a tiny one for tests and demos.
    "small": dict(d_model=256, n_heads=4, d_ff=1024, n_layers=3, dropout=0.1),
    "tiny": dict(d_model=64, n_heads=4, d_ff=256, n_layers=2, dropout=0.0),
}


@dataclass(frozen=True)
class TransformerConfig(ConfigMixin):
    """Hyper-parameters of the encoder-decoder Transformer (defaults: the base model of Table 3).

    Args:
        src_vocab_size, tgt_vocab_size: vocabulary sizes (equal when the vocabulary is shared).
        d_model: model width (512).
        n_heads: attention heads h (8); ``d_model % n_heads == 0``.
        d_ff: inner width of the feed-forward network (2048).
        n_layers: encoder layers N (6).
        n_decoder_layers: decoder layers; ``None`` means the same as ``n_layers``.
        dropout: residual and embedding dropout P_drop (§5.4).
        attention_dropout, activation_dropout: extra dropouts not in the paper (0 by default).
        activation: ``"relu"`` (paper) or ``"gelu"``.
        norm: ``"post"`` (paper) or ``"pre"`` (flagged deviation; adds a final LayerNorm to each stack).
        positional: ``"sinusoidal"`` (paper) or ``"learned"``.
        max_len: most positions the model accepts.
        tie_embeddings: ``"none"``, ``"decoder"`` (target embedding = output projection) or ``"all"``
            (source and target embeddings and output projection share one matrix, §3.4; needs one vocabulary).
        pad_id: padding token id (masked out of attention, ignored by the loss).
        eps: LayerNorm epsilon.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 2048
    n_layers: int = 6
    n_decoder_layers: int | None = None
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    activation: str = "relu"
    norm: str = "post"
    positional: str = "sinusoidal"
    max_len: int = 1024
    tie_embeddings: str = "all"
    pad_id: int = 0
    eps: float = 1e-5

    def __post_init__(self) -> None:
        check_positive_ints(
            self, ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "d_ff", "n_layers", "max_len")
        )
        check(
            self.d_model % self.n_heads == 0,
            f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})",
        )
        check(
            self.n_decoder_layers is None or (is_int(self.n_decoder_layers) and self.n_decoder_layers > 0),
            f"n_decoder_layers must be a positive int or None, got {self.n_decoder_layers!r}",
        )
        check_fractions(self, ("dropout", "attention_dropout", "activation_dropout"))
        check(self.activation in ("relu", "gelu"), f"activation must be relu|gelu, got {self.activation!r}")
        check(self.norm in ("post", "pre"), f"norm must be post|pre, got {self.norm!r}")
        check(
            self.positional in ("sinusoidal", "learned"),
            f"positional must be sinusoidal|learned, got {self.positional!r}",
        )
        check(
            self.tie_embeddings in ("none", "decoder", "all"),
            f"tie_embeddings must be none|decoder|all, got {self.tie_embeddings!r}",
        )
        check(
            self.tie_embeddings != "all" or self.src_vocab_size == self.tgt_vocab_size,
            "tie_embeddings='all' needs a shared vocabulary (src_vocab_size == tgt_vocab_size), got "
            f"{self.src_vocab_size} and {self.tgt_vocab_size}",
        )
        check(
            is_int(self.pad_id) and 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size),
            f"pad_id must be an int inside the vocabulary [0, {min(self.src_vocab_size, self.tgt_vocab_size)}), "
            f"got {self.pad_id!r}",
        )
        check(
            is_number(self.eps) and self.eps > 0,
            f"eps must be a positive number, got {self.eps!r}",
        )

    @property
    def decoder_layers(self) -> int:
        return self.n_layers if self.n_decoder_layers is None else self.n_decoder_layers

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Self:
        """A named preset (``base``, ``big``, ``small``, ``tiny``) with overrides, e.g. vocabulary sizes."""
        return config_preset(cls, PRESETS, name, overrides, "Transformer")
