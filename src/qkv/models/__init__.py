"""Models built from qkv's layers."""

from qkv.models.classifier import ClassifierConfig, TextClassifier
from qkv.models.transformer import AttentionMaps, Decoder, DecoderCache, Encoder, Transformer
from qkv.models.vit import ViT, ViTConfig

__all__ = [
    "AttentionMaps",
    "ClassifierConfig",
    "Decoder",
    "DecoderCache",
    "Encoder",
    "TextClassifier",
    "Transformer",
    "ViT",
    "ViTConfig",
]
