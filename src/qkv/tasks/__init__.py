"""Tasks: the recipes that turn qkv's models and its generic trainers into a translator or a classifier.

- :mod:`qkv.tasks.translation`: parallel text -> subwords -> Transformer / RNN -> BLEU; :class:`Translator`.
- :mod:`qkv.tasks.text_classification`: sentences -> [CLS] classifier (SST-2), with MLM pre-training;
  :class:`SentenceClassifier`.
- :mod:`qkv.tasks.image_classification`: images -> ViT (MNIST, 8×8 digits); :class:`ImageClassifier`.

:func:`qkv.tasks.load.load` (``qkv.load``) opens any model folder as its task's object: a ``Translator``, a
``SentenceClassifier`` or an ``ImageClassifier`` (:mod:`qkv.tasks.kinds` tells them apart).
"""
