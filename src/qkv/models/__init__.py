"""Models built from qkv's layers."""

from qkv.models.transformer import AttentionMaps, Decoder, DecoderCache, Encoder, Transformer

__all__ = ["AttentionMaps", "Decoder", "DecoderCache", "Encoder", "Transformer"]
