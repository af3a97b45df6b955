"""Running a model for inference inside a block: eval mode (no dropout) and no autograd, the flag restored."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def eval_mode(model: nn.Module, *, inference: bool = True) -> Iterator[None]:
    """Eval mode and no autograd while the block runs; ``model``'s training flag is restored after.

    Args:
        model: the module to switch.
        inference: ``torch.inference_mode`` (fastest; tensors made inside cannot enter autograd later) or,
            with ``False``, ``torch.no_grad`` (for sharded models whose parameters must stay ordinary tensors).

    Example:
        >>> with eval_mode(model):                                    # doctest: +SKIP
        ...     logits = model(src, tgt)
    """
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode() if inference else torch.no_grad():
            yield
    finally:
        model.train(was_training)
