"""Tasks: the recipes that turn qkv's models and its generic trainers into a translator or a classifier.

- :mod:`qkv.tasks.translation`: parallel text -> subwords -> Transformer / RNN -> BLEU; :class:`Translator`.
- :mod:`qkv.tasks.text_classification`: sentences -> [CLS] classifier (SST-2), with MLM pre-training.
- :mod:`qkv.tasks.image_classification`: images -> ViT (MNIST, 8×8 digits).
"""
