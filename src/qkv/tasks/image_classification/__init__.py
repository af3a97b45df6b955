"""Image classification with a Vision Transformer."""

from qkv.tasks.image_classification.predictor import ImageClassifier
from qkv.tasks.image_classification.vit import accuracy, predict_logits, train_image_classifier

__all__ = ["ImageClassifier", "accuracy", "predict_logits", "train_image_classifier"]
