"""qkv: the Transformer of "Attention Is All You Need", faithful, readable, trainable and inspectable.

Open anything trained (by qkv, or a Hugging Face Marian / BERT / ViT folder) with :func:`qkv.load`:

    >>> import qkv
    >>> tr = qkv.load("runs/de-en/best")          # doctest: +SKIP
    >>> tr.translate("Ein Hund läuft.")           # doctest: +SKIP
    'A dog runs.'
"""

from typing import TYPE_CHECKING, Any

from qkv.config import ConfigError
from qkv.models.transformer import AttentionMaps, Decoder, DecoderCache, Encoder, Transformer, TransformerConfig
from qkv.nn import (
    DecoderLayer,
    EncoderLayer,
    KVCache,
    MaskError,
    MultiHeadAttention,
    PositionalEncoding,
    PositionwiseFeedForward,
    TokenEmbedding,
    causal_mask,
    combine_masks,
    local_mask,
    padding_mask,
    scaled_dot_product_attention,
)

if TYPE_CHECKING:
    from qkv.tasks.load import load

__version__ = "0.1.0"

#: names imported on first use (module ``__getattr__``), so that ``import qkv`` stays light
_LAZY = {"load": "qkv.tasks.load"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qkv' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})

__all__ = [
    "AttentionMaps",
    "ConfigError",
    "Decoder",
    "DecoderCache",
    "DecoderLayer",
    "Encoder",
    "EncoderLayer",
    "KVCache",
    "MaskError",
    "MultiHeadAttention",
    "PositionalEncoding",
    "PositionwiseFeedForward",
    "TokenEmbedding",
    "Transformer",
    "TransformerConfig",
    "causal_mask",
    "combine_masks",
    "load",
    "local_mask",
    "padding_mask",
    "scaled_dot_product_attention",
]
