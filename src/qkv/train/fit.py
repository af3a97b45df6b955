"""A generic epoch loop for models trained the BERT way: classifiers (text or images) and MLM pre-training.

Legend: B batch, C classes.

The recipe is BERT's fine-tuning one (Devlin et al. 2019, §A.3) rather than the translation schedule of §5.3:
AdamW, linear warm-up then linear decay of the learning rate, gradient clipping. The loop knows no task: the
task gives it its batches (per epoch) and a ``step`` that turns one batch into a loss (as minGPT's trainer);
:mod:`qkv.tasks.text_classification` and :mod:`qkv.tasks.image_classification` are its callers.

    for epoch in 1..epochs:
        for batch in batches(epoch):
            loss, correct, count = step(model, batch)
            AdamW step on loss (clipped), lr = warm-up / linear decay
        record = {epoch, step, loss (mean over counted items), accuracy, + evaluate(model)}

Models are saved as the shared checkpoint folders of :mod:`qkv.train.checkpoint` (arch ``"classifier"`` or
``"vit"``, see :mod:`qkv.models.registry`) by :func:`save_classifier_checkpoint`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.config import ConfigMixin, check, check_fractions, check_positive_ints, is_number
from qkv.data.tokenizer import SubwordTokenizer, TokenizerFile
from qkv.decode.corpus import open_progress
from qkv.train.checkpoint import save_checkpoint
from qkv.train.precision import PRECISIONS, autocast, resolve_precision
from qkv.train.schedule import LinearDecaySchedule

#: ``step(model, batch) -> (loss, correct, count)``: the mean loss of the batch over its ``count`` items (0: skip
#: the batch) and how many of them the model got right.
Step = Callable[[nn.Module, Any], tuple[Tensor | None, int, int]]


def check_fit_config(config: Any) -> None:
    """The checks every :func:`fit` config shares (epochs, batch_size, lr, weight_decay, warmup, grad_clip)."""
    check_positive_ints(config, ("epochs", "batch_size"))
    check(is_number(config.lr) and config.lr > 0, f"lr must be > 0, got {config.lr!r}")
    for name in ("weight_decay", "grad_clip"):
        value = getattr(config, name)
        check(is_number(value) and value >= 0, f"{name} must be a number >= 0, got {value!r}")
    check_fractions(config, ("warmup",))


@dataclass(frozen=True)
class ClassifyTrainConfig(ConfigMixin):
    """Hyper-parameters of a classifier trained with :func:`fit` (text: :mod:`qkv.tasks.text_classification`,
    images: :mod:`qkv.tasks.image_classification`).

    Args:
        epochs: passes over the training set.
        batch_size: examples per step.
        lr: peak learning rate of AdamW.
        weight_decay: decoupled weight decay (not applied to biases, LayerNorms, embeddings' [CLS]/positions).
        warmup: fraction of all steps spent warming up linearly (then linear decay to 0).
        label_smoothing: ε of label smoothing (§5.4); 0 by default for classification.
        grad_clip: clip the global gradient norm (0 = off).
        word_dropout: probability of replacing a training token by ``[UNK]`` (token inputs only; 0 = off), see
            :func:`qkv.tasks.text_classification.word_dropout`.
        seed: seeds batching order and dropout.
        precision: ``"fp32"`` (default), ``"bf16"`` autocast or ``"auto"`` (bf16 where the device has it fast),
            see :mod:`qkv.train.precision`; the weights and AdamW's state stay fp32.
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
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_fit_config(self)
        check_fractions(self, ("label_smoothing", "word_dropout"))
        check(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}")


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
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters()) or None  # one kernel per tensor
    optimizer = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-9, fused=fused)
    total = max(total_steps, 1)
    factor = LinearDecaySchedule(1.0, max(1, int(warmup * total)), total)  # a factor on lr, of the 1-based step
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda index: factor(index + 1))


def optimizer_step(loss: Tensor, model: nn.Module, optimizer, scheduler, grad_clip: float) -> None:
    """One update: clear the gradients, back-propagate ``loss``, clip the global norm (0 = off), step both."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()


def accuracy_of(logits: Tensor, labels: Iterable[int]) -> float:
    """Fraction of rows of ``logits`` ``(N, C)`` whose arg-max is the label."""
    return (logits.argmax(-1) == torch.as_tensor(list(labels))).float().mean().item()


def classification_step(label_smoothing: float, device: torch.device):
    """The :data:`qkv.train.fit.Step` of a classifier: cross-entropy of ``model(x)`` ``(B, C)`` against ``y``."""

    def step(model: nn.Module, batch: tuple[Tensor, Tensor]):
        x, y = batch
        y = y.to(device)  # (B,)
        logits = model(x.to(device))  # (B, C)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        return loss, int((logits.argmax(-1) == y).sum()), len(y)

    return step


def fit(
    model: nn.Module,
    batches: Callable[[int], Iterable[Any]],
    step: Step,
    config: Any,
    *,
    total_steps: int,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    accuracy_name: str = "train_acc",
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[int, float], None] | None = None,
    keep_best: str | None = None,
    progress: Callable[..., Any] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` for ``config.epochs`` epochs; returns one record per epoch.

    Args:
        model: the model, on its device; trained in place.
        batches: ``batches(epoch)`` (1-based) yields the epoch's batches, in whatever form ``step`` takes.
        step: turns a batch into ``(loss, correct, count)`` (see :data:`Step`).
        config: ``epochs``, ``lr``, ``weight_decay``, ``warmup`` (a fraction of ``total_steps``), ``grad_clip``
            (0 = off), ``seed`` (seeds torch, hence dropout) and optionally ``precision`` (bf16 autocast of the
            forward, see :mod:`qkv.train.precision`), e.g. a :class:`ClassifyTrainConfig`.
        total_steps: optimizer steps in all (the length of the learning-rate schedule).
        evaluate: called after every epoch; its metrics (e.g. ``{"dev_acc": …}``) join the record.
        accuracy_name: the record's key for the training accuracy.
        on_epoch: called with each epoch's record (the CLI prints it).
        on_step: called with ``(step, loss)`` after every optimizer step.
        keep_best: a metric of ``evaluate`` (e.g. ``"dev_acc"``): the model ends with the weights of the epoch
            where it was highest (the earliest on ties; :func:`best_epoch` names it), not those of the last.
        progress: a ``tqdm``-like factory for a bar over the ``total_steps`` (``None``: no bar).

    Returns:
        ``[{"epoch", "step", "loss", accuracy_name, **evaluate(model)}, …]``.
    """
    torch.manual_seed(config.seed)
    optimizer, scheduler = make_optimizer(model, config.lr, config.weight_decay, total_steps, config.warmup)
    history, n_steps = [], 0
    best: dict[str, Tensor] | None = None
    bar = open_progress(progress, total=total_steps, desc="train", unit="step")
    device = next(model.parameters()).device
    bf16 = resolve_precision(getattr(config, "precision", "fp32"), device) == "bf16"
    for epoch in range(1, config.epochs + 1):
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for batch in batches(epoch):
            with autocast(device, bf16):  # the loss is computed from fp32 logits inside `step`
                loss, right, count = step(model, batch)
            if count == 0:
                continue
            optimizer_step(loss, model, optimizer, scheduler, config.grad_clip)
            n_steps += 1
            loss_sum += loss.item() * count
            correct += right
            seen += count
            if on_step is not None:
                on_step(n_steps, loss.item())
            bar.update(1)
        record = {"epoch": epoch, "step": n_steps, "loss": loss_sum / max(seen, 1)}
        record[accuracy_name] = correct / max(seen, 1)
        if evaluate is not None:
            record.update(evaluate(model))
        history.append(record)
        if keep_best is not None and best_epoch(history, keep_best) == epoch:
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if on_epoch is not None:
            on_epoch(record)
    if best is not None:
        model.load_state_dict(best)
    bar.close()
    return history


def best_epoch(history: list[dict[str, Any]], metric: str) -> int:
    """The epoch of ``history`` with the highest ``metric`` (the earliest on ties)."""
    if not history or any(metric not in r for r in history):
        raise ValueError(f"keep_best: every epoch record needs {metric!r} (give evaluate=)")
    return max(history, key=lambda r: r[metric])["epoch"]


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
    """:func:`~qkv.train.checkpoint.save_checkpoint` after :func:`fit` (a classifier or MLM pre-training).

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
