"""The translation task end to end: read a corpus, learn subwords, build a model, train, decode, score.

The CLI (`qkv train`, `qkv evaluate`, `qkv demo`) and the benchmarks call these functions; each step is also a
library call of its own (:mod:`qkv.data`, :mod:`qkv.train`, :mod:`qkv.decode`, :mod:`qkv.scoring`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from qkv.config import ConfigError
from qkv.data.multi30k import read_splits
from qkv.data.text import ParallelText
from qkv.data.tokenizer import TokenizerPair
from qkv.models.registry import SEQ2SEQ_ARCHS, build_model
from qkv.models.rnn import RNNConfig, build_rnn
from qkv.models.transformer import TransformerConfig

Pairs = list[tuple[list[int], list[int]]]


@dataclass
class TranslationData:
    """A tokenized parallel corpus: ids for training/validation, raw text for scoring."""

    tokenizers: TokenizerPair
    train: Pairs
    valid: Pairs
    text: dict[str, ParallelText]
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)


def prepare_data(
    data_dir: str | Path,
    src_lang: str,
    tgt_lang: str,
    *,
    vocab_size: int = 8000,
    tokenizer_model: str = "bpe",
    joint: bool = True,
    max_words: int | None = None,
    skip_invalid: bool = False,
    tokenizers: TokenizerPair | None = None,
) -> TranslationData:
    """Read train/val/test of ``data_dir`` and learn subwords on the training side (unless ``tokenizers``).

    Over-long or invalid training pairs are errors, or dropped and counted with ``skip_invalid``.
    """
    text = read_splits(data_dir, src_lang, tgt_lang, max_words=max_words, skip_invalid=skip_invalid)
    train_text = text["train"]
    if tokenizers is None:
        tokenizers = TokenizerPair.train(train_text.src, train_text.tgt, vocab_size, tokenizer_model, joint=joint)
    return TranslationData(
        tokenizers=tokenizers,
        train=tokenizers.encode_pairs(train_text.src, train_text.tgt),
        valid=tokenizers.encode_pairs(text["val"].src, text["val"].tgt),
        text=text,
        dropped={split: dict(t.dropped) for split, t in text.items() if t.dropped},
    )


def build_translation_model(
    arch: str, preset: str, tokenizers: TokenizerPair, overrides: dict[str, Any] | None = None
) -> nn.Module:
    """A fresh model for ``tokenizers``' vocabularies: ``arch`` in transformer / rnn / rnn-attention.

    A Transformer with one joint vocabulary ties all three embedding matrices (§3.4); with separate
    vocabularies it ties the target embedding and the output projection.
    """
    overrides = dict(overrides or {})
    sizes = dict(src_vocab_size=tokenizers.src.vocab_size, tgt_vocab_size=tokenizers.tgt.vocab_size)
    if arch == "transformer":
        tie = "all" if tokenizers.shared else "decoder"
        config = TransformerConfig.preset(preset, **sizes, **{"tie_embeddings": tie, **overrides})
        return build_model(arch, config.to_dict())
    if arch in SEQ2SEQ_ARCHS:
        return build_rnn(RNNConfig.preset(preset, arch, **sizes, **overrides))
    raise ConfigError(f"unknown architecture {arch!r}; known: {', '.join(SEQ2SEQ_ARCHS)}")


def write_averaged_checkpoint(out_dir: str | Path, k: int = 5) -> Path | None:
    """Average the weights of the last ``k`` periodic checkpoints of a run into ``out_dir/averaged`` (§6.1).

    Returns the new folder, or ``None`` when the run kept fewer than two periodic checkpoints.
    """
    from qkv.train.checkpoint import average_checkpoints, build_model, load_state_dict, read_config, save_checkpoint
    from qkv.train.trainer import periodic_checkpoints

    paths = periodic_checkpoints(out_dir)[-k:]
    if len(paths) < 2:
        return None
    config = read_config(paths[-1])
    model = build_model(config, where=str(paths[-1]))
    load_state_dict(model, average_checkpoints(paths), source=f"average of {len(paths)} checkpoints")
    return save_checkpoint(
        Path(out_dir) / "averaged",
        model,
        train_config=config.get("train"),
        step=config.get("step", 0),
        epoch=config.get("epoch", 0),
        tokenizers=TokenizerPair.load(paths[-1]),
        extra={"averaged": [p.name for p in paths]},
    )
