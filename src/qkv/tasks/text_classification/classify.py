"""Text classification, BERT-style: sentences -> token ids -> [CLS] classifier (SST-2), trained with
:func:`qkv.train.fit.fit`.

Legend: B batch, T tokens, C classes.

Sentences are batched by similar length (shuffled within chunks) so that little compute goes to padding; from
scratch, word dropout (a training token becomes [UNK]) regularizes. MLM pre-training is :mod:`.mlm`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from qkv.data.batching import collate_tokens, length_batches
from qkv.data.special import UNK
from qkv.data.tokenizer import SubwordTokenizer
from qkv.nn.modes import eval_mode
from qkv.train.fit import ClassifyTrainConfig, accuracy_of, classification_step, fit

SST2_LABELS = ["negative", "positive"]


def encode(tokenizer: SubwordTokenizer, sentences: list[str], max_len: int) -> list[list[int]]:
    """Token ids per sentence, truncated to ``max_len`` (an empty encoding becomes ``[UNK]``)."""
    return [ids[:max_len] or [UNK] for ids in tokenizer.encode_batch(sentences)]


def word_dropout(tokens: Tensor, p: float, unk_id: int, pad_id: int, generator: torch.Generator) -> Tensor:
    """Replace each non-padding token by ``unk_id`` with probability ``p`` (Iyyer et al. 2015, "word dropout").

    A regularizer for training text classifiers from scratch: the model cannot lean on any single word.
    Shape: ``(B, T) -> (B, T)``.
    """
    drop = (torch.rand(tokens.shape, generator=generator) < p) & (tokens != pad_id)  # (B, T)
    return tokens.masked_fill(drop, unk_id)


def train_text_classifier(
    model: nn.Module,
    sentences: Sequence[Sequence[int]],
    labels: Sequence[int],
    config: ClassifyTrainConfig,
    *,
    dev: tuple[Sequence[Sequence[int]], Sequence[int]] | None = None,
    pad_id: int = 0,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[int, float], None] | None = None,
    keep_best: bool = False,
    progress: Callable[..., Any] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` (token ids ``(B, T)`` -> logits ``(B, C)``); one record per epoch: epoch, step, loss,
    train_acc, dev_acc (with ``dev``).

    Args:
        sentences, labels: token id lists (variable length) and their class ids.
        config: a :class:`~qkv.train.fit.ClassifyTrainConfig` (its ``word_dropout`` applies here).
        dev: ``(sentences, labels)`` evaluated after every epoch.
        pad_id: padding id.
        on_epoch, on_step: see :func:`qkv.train.fit.fit`.
        keep_best: end with the weights of the epoch of the best ``dev_acc`` (needs ``dev``), not the last.
        on_epoch, on_step, progress: see :func:`qkv.train.fit.fit`.
    """
    if len(sentences) != len(labels):
        raise ValueError(f"{len(sentences)} inputs but {len(labels)} labels")
    device = next(model.parameters()).device
    labels_t = torch.as_tensor(list(labels), dtype=torch.long)
    lengths = [len(s) for s in sentences]
    generator = torch.Generator().manual_seed(config.seed)  # word dropout's draws

    def batches(epoch: int):
        for batch in length_batches(lengths, config.batch_size, shuffle=True, seed=config.seed + epoch):
            x = collate_tokens([sentences[i] for i in batch], pad_id)  # (B, T)
            if config.word_dropout:
                x = word_dropout(x, config.word_dropout, UNK, pad_id, generator)
            yield x, labels_t[torch.as_tensor(batch)]

    def evaluate(m: nn.Module) -> dict[str, float]:
        return {"dev_acc": accuracy(m, dev[0], dev[1], pad_id=pad_id)}

    total = math.ceil(len(sentences) / config.batch_size) * config.epochs
    step = classification_step(config.label_smoothing, device)
    return fit(model, batches, step, config, total_steps=total, evaluate=evaluate if dev is not None else None,
               on_epoch=on_epoch, on_step=on_step, keep_best="dev_acc" if keep_best else None,
               progress=progress)  # fmt: skip


def predict_logits(model: nn.Module, sentences: Sequence[Sequence[int]], *, batch_size: int = 256,
                   pad_id: int = 0) -> Tensor:  # fmt: skip
    """Logits ``(N, C)`` for token id lists (batched by length, padded per batch), in input order."""
    device = next(model.parameters()).device
    logits = torch.empty(0, 0)
    with eval_mode(model):
        for batch in length_batches([len(s) for s in sentences], batch_size, shuffle=False):
            lg = model(collate_tokens([sentences[i] for i in batch], pad_id).to(device)).float().cpu()  # (b, C)
            if logits.numel() == 0:
                logits = lg.new_empty(len(sentences), lg.shape[-1])
            logits[torch.tensor(batch)] = lg
    return logits


def accuracy(model: nn.Module, sentences: Sequence[Sequence[int]], labels: Sequence[int], *, pad_id: int = 0) -> float:
    """Fraction of sentences whose arg-max logit is the label."""
    return accuracy_of(predict_logits(model, sentences, pad_id=pad_id), labels)
