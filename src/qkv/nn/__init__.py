"""Building blocks of the Transformer: attention, masks, positions, feed-forward, layers."""

from qkv.nn.attention import KVCache, MultiHeadAttention, scaled_dot_product_attention
from qkv.nn.embedding import TokenEmbedding
from qkv.nn.feedforward import PositionwiseFeedForward
from qkv.nn.layers import DecoderLayer, EncoderLayer, LayerCache
from qkv.nn.masks import MaskError, causal_mask, check_mask, combine_masks, lengths_mask, local_mask, padding_mask
from qkv.nn.positional import PositionalEncoding, sinusoidal_table

__all__ = [
    "DecoderLayer",
    "EncoderLayer",
    "KVCache",
    "LayerCache",
    "MaskError",
    "MultiHeadAttention",
    "PositionalEncoding",
    "PositionwiseFeedForward",
    "TokenEmbedding",
    "causal_mask",
    "check_mask",
    "combine_masks",
    "lengths_mask",
    "local_mask",
    "padding_mask",
    "scaled_dot_product_attention",
    "sinusoidal_table",
]
