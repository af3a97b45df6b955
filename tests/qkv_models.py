"""Tiny qkv checkpoint folders (untrained, seeded) of each kind, for the tests of qkv.load and the commands."""

from __future__ import annotations

from pathlib import Path

import torch

import qkv
from qkv.data.tokenizer import SubwordTokenizer, TokenizerFile, TokenizerPair
from qkv.models.classifier import ClassifierConfig, TextClassifier
from qkv.models.vit import ViT, ViTConfig
from qkv.train.checkpoint import save_checkpoint

SOURCES = ["ein hund läuft", "zwei kleine katzen", "der mann liest ein buch", "ein kind spielt im park"]
TARGETS = ["a dog runs", "two small cats", "the man reads a book", "a child plays in the park"]
REVIEWS = ["the film was great", "the film was dull", "a fine and lovely film", "a dull , awful mess"]


def translation_folder(root: Path, *, extra_vocab: int = 0) -> Path:
    pair = TokenizerPair.train(SOURCES, TARGETS, vocab_size=60, model="word", joint=False)
    cfg = qkv.TransformerConfig.preset("tiny", src_vocab_size=pair.src.vocab_size - extra_vocab,
                                       tgt_vocab_size=pair.tgt.vocab_size, tie_embeddings="decoder")  # fmt: skip
    torch.manual_seed(0)
    return save_checkpoint(root / "tr", qkv.Transformer(cfg), tokenizers=pair)


def classifier_folder(root: Path, *, extra_vocab: int = 0) -> Path:
    tokenizer = SubwordTokenizer.train(REVIEWS, 100, "word")
    model = TextClassifier(ClassifierConfig.preset("tiny", vocab_size=tokenizer.vocab_size - extra_vocab))
    return save_checkpoint(root / "cls", model, tokenizers=TokenizerFile(tokenizer), extra={
        "labels": ["negative", "positive"], "task": "sst2"})  # fmt: skip


def vit_folder(root: Path) -> Path:
    return save_checkpoint(root / "vit", ViT(ViTConfig.preset("digits", image_size=8)))


def train_copier(vocab: int, batch, steps: int = 150) -> qkv.Transformer:
    """A tiny Transformer trained for a few seconds (seed 0) on ``batch(step) -> (src, tgt)``, tgt starting with
    BOS: peaked outputs, as a trained model has. Returned in eval mode."""
    import torch.nn.functional as F

    from qkv.data.special import PAD

    torch.manual_seed(0)
    cfg = qkv.TransformerConfig.preset("tiny", src_vocab_size=vocab, tgt_vocab_size=vocab, max_len=64)
    model = qkv.Transformer(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(steps):
        src, tgt = batch(step)
        logits = model(src, tgt[:, :-1])  # teacher forcing: predict tgt[1:] from tgt[:-1]
        loss = F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
