"""Image classification with a ViT (MNIST t10k, scikit-learn's 8×8 digits), trained with
:func:`qkv.train.fit.fit`.

Legend: B batch, C classes; images are ``(N, 1, S, S)`` tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from qkv.nn.modes import eval_mode
from qkv.train.fit import ClassifyTrainConfig, accuracy_of, classification_step, fit


def train_image_classifier(
    model: nn.Module,
    images: Tensor,
    labels: Sequence[int],
    config: ClassifyTrainConfig,
    *,
    dev: tuple[Tensor, Sequence[int]] | None = None,
    augment: Callable[[Tensor], Tensor] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[int, float], None] | None = None,
    keep_best: bool = False,
    progress: Callable[..., Any] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` (images ``(B, ...)`` -> logits ``(B, C)``); one record per epoch: epoch, step, loss,
    train_acc, dev_acc (with ``dev``).

    Args:
        images, labels: an image tensor ``(N, ...)`` and its ``N`` class ids.
        config: a :class:`~qkv.train.fit.ClassifyTrainConfig`.
        dev: ``(images, labels)`` evaluated after every epoch.
        augment: applied to each training batch (e.g. :func:`qkv.data.mnist.random_shift`).
        on_epoch, on_step: see :func:`qkv.train.fit.fit`.
        keep_best: end with the weights of the epoch of the best ``dev_acc`` (needs ``dev``), not the last.
        on_epoch, on_step, progress: see :func:`qkv.train.fit.fit`.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} inputs but {len(labels)} labels")
    labels_t = torch.as_tensor(list(labels), dtype=torch.long)

    def batches(epoch: int):
        perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(config.seed + epoch))
        for start in range(0, len(perm), config.batch_size):
            batch = perm[start : start + config.batch_size]
            x = images[batch]
            yield (augment(x) if augment is not None else x), labels_t[batch]

    def evaluate(m: nn.Module) -> dict[str, float]:
        return {"dev_acc": accuracy(m, dev[0], dev[1])}

    total = math.ceil(len(images) / config.batch_size) * config.epochs
    step = classification_step(config.label_smoothing, next(model.parameters()).device)
    return fit(model, batches, step, config, total_steps=total, evaluate=evaluate if dev is not None else None,
               on_epoch=on_epoch, on_step=on_step, keep_best="dev_acc" if keep_best else None,
               progress=progress)  # fmt: skip


def predict_logits(model: nn.Module, images: Tensor, *, batch_size: int = 256) -> Tensor:
    """Logits ``(N, C)`` for an image tensor ``(N, ...)``."""
    device = next(model.parameters()).device
    with eval_mode(model):
        chunks = [model(images[s : s + batch_size].to(device)).float().cpu() for s in range(0, len(images), batch_size)]
    return torch.cat(chunks) if chunks else torch.empty(0, 0)


def accuracy(model: nn.Module, images: Tensor, labels: Sequence[int]) -> float:
    """Fraction of images whose arg-max logit is the label."""
    return accuracy_of(predict_logits(model, images), labels)
