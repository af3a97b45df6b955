"""Text classification (SST-2): a [CLS] classifier trained from scratch or after MLM pre-training."""

from qkv.tasks.text_classification.classify import (
    SST2_LABELS,
    accuracy,
    encode,
    predict_logits,
    train_text_classifier,
    word_dropout,
)
from qkv.tasks.text_classification.mlm import MLMConfig, load_pretrained_encoder, mask_tokens, pretrain_mlm
from qkv.tasks.text_classification.predictor import SentenceClassifier

__all__ = [
    "SST2_LABELS",
    "MLMConfig",
    "SentenceClassifier",
    "accuracy",
    "encode",
    "load_pretrained_encoder",
    "mask_tokens",
    "predict_logits",
    "pretrain_mlm",
    "train_text_classifier",
    "word_dropout",
]
