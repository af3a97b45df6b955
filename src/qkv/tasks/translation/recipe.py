"""The translation recipe: read a corpus, learn subwords, build a model, validate with BLEU, average.

The CLI (`qkv train`, `qkv evaluate`, `qkv demo`) and the benchmarks call these functions; each step is also a
library call of its own (:mod:`qkv.data`, :mod:`qkv.train`, :mod:`qkv.decode`, :mod:`qkv.scoring`). The
trained model is used through :class:`qkv.tasks.translation.Translator`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from qkv.config import ConfigError
from qkv.data.multi30k import read_splits
from qkv.data.text import TOO_LONG, DataError, ParallelText
from qkv.data.tokenizer import TokenizerPair
from qkv.decode import decode_corpus
from qkv.decode.corpus import open_progress
from qkv.models.registry import SEQ2SEQ_ARCHS, build_model
from qkv.models.rnn import RNNConfig, build_rnn
from qkv.models.transformer import TransformerConfig
from qkv.scoring import score
from qkv.train.checkpoint import (
    average_checkpoints,
    load_state_dict,
    model_from_config,
    periodic_checkpoints,
    read_config,
    save_checkpoint,
)

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


def check_lengths(data: TranslationData, max_len: int | None, *, skip_invalid: bool = False) -> None:
    """Refuse (or, with ``skip_invalid``, drop and count under ``"too_long"``) training and validation pairs
    longer in subwords than the model's ``max_len`` (+1 for BOS/EOS); the error names the file and line,
    e.g. ``"train.de:17: source has 130 subwords ..."``. ``max_len=None`` (an RNN): nothing to check."""
    if max_len is None:
        return
    for split, pairs in (("train", data.train), ("val", data.valid)):
        text, long = data.text[split], []
        for i, pair in enumerate(pairs):
            side = next((k for k in (0, 1) if len(pair[k]) + 1 > max_len), None)
            if side is None:
                continue
            if not skip_invalid:
                raise DataError(
                    f"{text.where(i, side)}: {('source', 'target')[side]} has {len(pair[side])} subwords (+1 for "
                    f"BOS/EOS), more than the model's max_len={max_len}: --skip-invalid drops such pairs, or "
                    "raise it with --set max_len=N"
                )
            long.append(i)
        if long:
            text.drop(long, TOO_LONG)
            gone = set(long)
            pairs[:] = [p for i, p in enumerate(pairs) if i not in gone]
            data.dropped[split] = dict(text.dropped)


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


def greedy_bleu(
    sources: Sequence[Sequence[int]],
    references: Sequence[str],
    detokenize: Callable[[list[int]], str],
    *,
    max_len_b: int = 50,
    batch_size: int = 64,
    progress: Callable[..., Any] | None = None,
) -> Callable[[nn.Module], float]:
    """A ``bleu_fn`` for :func:`train`: greedy-decode ``sources``, score against ``references`` (sacreBLEU).

    Args:
        sources: source token ids per sentence (without EOS; it is appended as in training).
        references: reference translations (detokenized text).
        detokenize: target ids -> text (e.g. ``tokenizers.tgt.decode``).
        max_len_b: output length limit = source length + ``max_len_b`` (§6.1).
        batch_size: sentences decoded together.
        progress: a ``tqdm``-like factory for a bar over each validation's sentences (``None``: no bar).
    """
    if len(sources) != len(references):
        raise ValueError(f"greedy_bleu: {len(sources)} sources but {len(references)} references")

    def bleu(model: nn.Module) -> float:
        bar = open_progress(progress, total=len(sources), desc="valid BLEU", unit="sent", leave=False)
        try:
            hyps = decode_corpus(model, sources, max_len_b=max_len_b, batch_size=batch_size, on_batch=bar.update)
        finally:
            bar.close()
        return float(score([detokenize(ids) for ids in hyps], list(references)).bleu)

    return bleu


def write_averaged_checkpoint(
    out_dir: str | Path, k: int = 5, dest: str | Path | None = None, *, replace: bool = True
) -> Path | None:
    """Average the weights of the last ``k`` periodic checkpoints of a run into ``dest`` (§6.1; default
    ``out_dir/averaged``; ``replace=False`` refuses a non-empty ``dest``).

    Returns the new folder, or ``None`` when the run kept fewer than two periodic checkpoints.
    """
    paths = periodic_checkpoints(out_dir)[-k:]
    if len(paths) < 2:
        return None
    config = read_config(paths[-1])
    model = model_from_config(config, where=str(paths[-1]))
    load_state_dict(model, average_checkpoints(paths), source=f"average of {len(paths)} checkpoints")
    return save_checkpoint(
        Path(out_dir) / "averaged" if dest is None else dest,
        model,
        train_config=config.get("train"),
        step=config.get("step", 0),
        epoch=config.get("epoch", 0),
        tokenizers=TokenizerPair.load(paths[-1]),
        extra={"averaged": [p.name for p in paths]},
        replace=replace,
    )
