"""Training loop for sequence and image classifiers (:class:`~qkv.models.classifier.TextClassifier`, ViT).

Legend: B batch, T tokens, C classes.

The recipe is BERT's fine-tuning one (Devlin et al. 2019, §A.3) rather than the translation schedule of §5.3:
AdamW, linear warm-up then linear decay of the learning rate, gradient clipping, cross-entropy on the logits.
Sentences are batched by similar length (shuffled within chunks) so that little compute goes to padding.

Models are saved as the shared checkpoint folders of :mod:`qkv.train.checkpoint` (arch ``"classifier"`` or
``"vit"``, see :mod:`qkv.models.registry`); :class:`TokenizerFile` puts a classifier's tokenizer beside them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.config import ConfigError, ConfigMixin
from qkv.data.tokenizer import SubwordTokenizer
from qkv.train.batching import collate_tokens
from qkv.train.checkpoint import save_checkpoint

TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class ClassifyTrainConfig(ConfigMixin):
    """Hyper-parameters of :func:`train_classifier`.

    Args:
        epochs: passes over the training set.
        batch_size: examples per step.
        lr: peak learning rate of AdamW.
        weight_decay: decoupled weight decay (not applied to biases, LayerNorms, embeddings' [CLS]/positions).
        warmup: fraction of all steps spent warming up linearly (then linear decay to 0).
        label_smoothing: ε of label smoothing (§5.4); 0 by default for classification.
        grad_clip: clip the global gradient norm (0 = off).
        word_dropout: probability of replacing a training token by ``[UNK]`` (token inputs only; 0 = off), see
            :func:`word_dropout`.
        seed: seeds batching order and dropout.
    """

    epochs: int = 4
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.06
    label_smoothing: float = 0.0
    grad_clip: float = 1.0
    word_dropout: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not (self.lr > 0 and 0 <= self.warmup < 1 and 0 <= self.label_smoothing < 1):
            raise ConfigError(f"bad lr/warmup/label_smoothing: {self.lr}, {self.warmup}, {self.label_smoothing}")
        if not 0 <= self.word_dropout < 1:
            raise ConfigError(f"word_dropout must be in [0, 1), got {self.word_dropout}")


def length_batches(lengths: Sequence[int], batch_size: int, *, shuffle: bool, seed: int = 0) -> list[list[int]]:
    """Index batches of similar lengths: shuffle, sort within chunks of 50 batches, shuffle the batches."""
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # matrices of linear maps decay; biases, norms, embeddings-like vectors ([CLS], positions) do not
        is_matrix = p.dim() >= 2 and "embed" not in name and "pos" not in name and name != "cls"
        (decay if is_matrix else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, total_steps: int, warmup: float):
    """AdamW with linear warm-up over ``warmup·total_steps`` steps, then linear decay to zero (BERT)."""
    optimizer = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-9)
    warm = max(1, int(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def optimizer_step(loss: Tensor, model: nn.Module, optimizer, scheduler, grad_clip: float) -> None:
    """One update: clear the gradients, back-propagate ``loss``, clip the global norm (0 = off), step both."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: Sequence, *, batch_size: int = 256, pad_id: int = 0) -> Tensor:
    """Logits ``(N, C)`` for token id lists (padded per batch) or for a tensor of images ``(N, ...)``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits = torch.empty(0, 0)
    if isinstance(inputs, Tensor):
        chunks = [model(inputs[s : s + batch_size].to(device)).float().cpu() for s in range(0, len(inputs), batch_size)]
        logits = torch.cat(chunks) if chunks else logits
    else:
        for batch in length_batches([len(s) for s in inputs], batch_size, shuffle=False):
            lg = model(collate_tokens([inputs[i] for i in batch], pad_id).to(device)).float().cpu()  # (b, C)
            if logits.numel() == 0:
                logits = lg.new_empty(len(inputs), lg.shape[-1])
            logits[torch.tensor(batch)] = lg
    model.train(was_training)
    return logits


def accuracy(model: nn.Module, inputs: Sequence, labels: Sequence[int], *, pad_id: int = 0) -> float:
    """Fraction of examples whose arg-max logit is the label."""
    logits = predict_logits(model, inputs, pad_id=pad_id)
    return (logits.argmax(-1) == torch.as_tensor(list(labels))).float().mean().item()


def word_dropout(tokens: Tensor, p: float, unk_id: int, pad_id: int, generator: torch.Generator) -> Tensor:
    """Replace each non-padding token by ``unk_id`` with probability ``p`` (Iyyer et al. 2015, "word dropout").

    A regularizer for training text classifiers from scratch: the model cannot lean on any single word.
    Shape: ``(B, T) -> (B, T)``.
    """
    drop = (torch.rand(tokens.shape, generator=generator) < p) & (tokens != pad_id)  # (B, T)
    return tokens.masked_fill(drop, unk_id)


def train_classifier(
    model: nn.Module,
    train_inputs: Sequence,
    train_labels: Sequence[int],
    config: ClassifyTrainConfig,
    *,
    dev: tuple[Sequence, Sequence[int]] | None = None,
    pad_id: int = 0,
    augment: Callable[[Tensor], Tensor] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` to classify; returns one record per epoch: epoch, step, loss, train_acc, dev_acc.

    Args:
        model: maps ``(B, T)`` token ids (or ``(B, ...)`` images) to logits ``(B, C)``.
        train_inputs: token id lists (variable length) or an image tensor ``(N, ...)``.
        train_labels: ``N`` class ids.
        config: a :class:`ClassifyTrainConfig`.
        dev: optional ``(inputs, labels)`` evaluated after every epoch.
        pad_id: padding id for token inputs.
        augment: optional function applied to each training batch (images: e.g. random shifts; token ids
            ``(B, T)``: e.g. :func:`word_dropout`).
        on_epoch: called with each epoch's record (the CLI prints it).
        on_step: called with ``(step, loss)`` after every optimizer step.
    """
    if len(train_inputs) != len(train_labels):
        raise ValueError(f"{len(train_inputs)} inputs but {len(train_labels)} labels")
    torch.manual_seed(config.seed)
    device = next(model.parameters()).device
    images = isinstance(train_inputs, Tensor)
    labels_t = torch.as_tensor(list(train_labels), dtype=torch.long)
    lengths = [1] * len(train_inputs) if images else [len(s) for s in train_inputs]
    steps_per_epoch = math.ceil(len(train_inputs) / config.batch_size)
    optimizer, scheduler = make_optimizer(
        model, config.lr, config.weight_decay, steps_per_epoch * config.epochs, config.warmup
    )
    generator = torch.Generator().manual_seed(config.seed)  # word dropout's draws
    history, step = [], 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        if images:
            perm = torch.randperm(len(train_inputs), generator=torch.Generator().manual_seed(config.seed + epoch))
            batches = [perm[i : i + config.batch_size] for i in range(0, len(perm), config.batch_size)]
        else:
            batches = length_batches(lengths, config.batch_size, shuffle=True, seed=config.seed + epoch)
        for batch in batches:
            if images:
                x = train_inputs[batch]
            else:
                x = collate_tokens([train_inputs[i] for i in batch], pad_id)  # (B, T)
            if augment is not None:
                x = augment(x)
            if config.word_dropout and not images:
                x = word_dropout(x, config.word_dropout, SubwordTokenizer.UNK, pad_id, generator)
            y = labels_t[torch.as_tensor(batch)].to(device)  # (B,)
            logits = model(x.to(device))  # (B, C)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
            optimizer_step(loss, model, optimizer, scheduler, config.grad_clip)
            step += 1
            total_loss += loss.item() * len(y)
            correct += (logits.argmax(-1) == y).sum().item()
            seen += len(y)
            if on_step is not None:
                on_step(step, loss.item())
        record = {"epoch": epoch, "step": step, "loss": total_loss / seen, "train_acc": correct / seen}
        if dev is not None:
            record["dev_acc"] = accuracy(model, dev[0], dev[1], pad_id=pad_id)
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return history


# -- the tokenizer in a checkpoint folder ------------------------------------------------------------------
@dataclass(frozen=True)
class TokenizerFile:
    """A classifier's :class:`~qkv.data.tokenizer.SubwordTokenizer` as checkpoint files.

    Pass it as ``tokenizers=`` to :func:`qkv.train.checkpoint.save_checkpoint`: ``save(folder)`` writes
    ``folder/tokenizer.json``; :meth:`load` reads it back.
    """

    tokenizer: SubwordTokenizer

    def save(self, folder: str | Path) -> Path:
        return self.tokenizer.save(Path(folder) / TOKENIZER_FILE)

    @staticmethod
    def load(folder: str | Path) -> SubwordTokenizer:
        return SubwordTokenizer.load(Path(folder) / TOKENIZER_FILE)


def save_classifier_checkpoint(
    folder: str | Path,
    model: nn.Module,
    train_config: Any,
    history: list[dict[str, Any]],
    *,
    metrics: dict[str, Any],
    tokenizer: SubwordTokenizer | None = None,
    **extra: Any,
) -> Path:
    """:func:`~qkv.train.checkpoint.save_checkpoint` after :func:`train_classifier` or MLM pre-training.

    Records ``train_config.to_dict()``, the step and epoch of the last ``history`` record, ``metrics``, the
    tokenizer (``tokenizer.json``, see :class:`TokenizerFile`), and ``history`` plus ``extra`` in ``config.json``.
    """
    return save_checkpoint(
        folder,
        model,
        train_config=train_config.to_dict(),
        step=history[-1]["step"] if history else 0,
        epoch=history[-1]["epoch"] if history else 0,
        metrics=metrics,
        tokenizers=TokenizerFile(tokenizer) if tokenizer is not None else None,
        extra={**extra, "history": history},
    )
