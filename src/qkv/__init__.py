"""qkv: the Transformer of "Attention Is All You Need", faithful, readable, trainable and inspectable."""

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

__version__ = "0.1.0"

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
    "local_mask",
    "padding_mask",
    "scaled_dot_product_attention",
]
