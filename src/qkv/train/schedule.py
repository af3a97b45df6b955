"""Learning-rate schedules, §5.3.

The paper's schedule (Eq. 3) warms up linearly for ``warmup_steps`` and then decays with the inverse square
root of the step number:

    lrate = d_model^-0.5 · min(step^-0.5, step · warmup_steps^-1.5)                     (Eq. 3)

Its peak, at ``step = warmup_steps``, is ``(d_model · warmup_steps)^-0.5`` (7.0e-4 for the base model with
4000 warm-up steps). :class:`InverseSqrtSchedule` is the same shape with the peak given directly (fairseq's
``inverse_sqrt``; an option, not the paper's parametrisation).

Steps count optimizer updates and start at 1. :func:`build_scheduler` turns a schedule into a
``torch.optim.lr_scheduler.LambdaLR`` on an optimizer whose base learning rate is 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


@dataclass(frozen=True)
class NoamSchedule:
    """Eq. 3: ``scale · d_model^-0.5 · min(step^-0.5, step · warmup_steps^-1.5)`` (``scale=1`` in the paper).

    Example:
        >>> s = NoamSchedule(d_model=512, warmup_steps=4000)
        >>> round(s(4000), 7), s(2000) < s(4000) > s(8000)
        (0.0006988, True)
    """

    d_model: int
    warmup_steps: int = 4000
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.d_model <= 0 or self.warmup_steps <= 0 or self.scale <= 0:
            raise ValueError(f"NoamSchedule needs positive d_model, warmup_steps and scale, got {self}")

    def __call__(self, step: int) -> float:
        step = max(step, 1)
        return self.scale * self.d_model**-0.5 * min(step**-0.5, step * self.warmup_steps**-1.5)


@dataclass(frozen=True)
class InverseSqrtSchedule:
    """Linear warm-up to ``peak_lr`` over ``warmup_steps``, then ``peak_lr · sqrt(warmup_steps / step)``.

    The shape of Eq. 3 with the peak chosen directly (fairseq's ``inverse_sqrt``). ``warmup_steps=0``
    starts at the peak.
    """

    peak_lr: float
    warmup_steps: int = 4000

    def __post_init__(self) -> None:
        if self.peak_lr <= 0 or self.warmup_steps < 0:
            raise ValueError(f"InverseSqrtSchedule needs peak_lr > 0 and warmup_steps >= 0, got {self}")

    def __call__(self, step: int) -> float:
        step = max(step, 1)
        if step < self.warmup_steps:
            return self.peak_lr * step / self.warmup_steps
        return self.peak_lr * (max(self.warmup_steps, 1) / step) ** 0.5


@dataclass(frozen=True)
class LinearDecaySchedule:
    """Linear warm-up to ``peak_lr`` over ``warmup_steps``, then a straight line down to 0 after ``total_steps``.

    Not in the paper (an option): for a run with a known budget of updates, decaying to zero by its end
    spends the last steps at a small rate, where Eq. 3 would still be at ``peak · sqrt(warmup / total)``.
    ``total_steps`` is the run's ``max_steps``; the line reaches 0 at step ``total_steps + 1``, so every one
    of the run's updates has a positive rate (BERT's fine-tuning schedule, which :mod:`qkv.train.fit` uses).

    Example:
        >>> s = LinearDecaySchedule(peak_lr=1e-3, warmup_steps=100, total_steps=1100)
        >>> s(50), s(100), s(601), s(1101)
        (0.0005, 0.001, 0.0005, 0.0)
    """

    peak_lr: float
    warmup_steps: int
    total_steps: int

    def __post_init__(self) -> None:
        if self.peak_lr <= 0 or not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(f"LinearDecaySchedule needs peak_lr > 0 and 0 <= warmup_steps <= total_steps, got {self}")

    def __call__(self, step: int) -> float:
        step = max(step, 1)
        if step <= self.warmup_steps:
            return self.peak_lr * step / self.warmup_steps
        return self.peak_lr * max(0.0, (self.total_steps + 1 - step) / max(1, self.total_steps - self.warmup_steps))


@dataclass(frozen=True)
class ConstantSchedule:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then constant (not in the paper; for experiments)."""

    lr: float
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError(f"ConstantSchedule needs lr > 0 and warmup_steps >= 0, got {self}")

    def __call__(self, step: int) -> float:
        step = max(step, 1)
        return self.lr * min(1.0, step / self.warmup_steps) if self.warmup_steps else self.lr


def build_scheduler(optimizer: Optimizer, schedule: Callable[[int], float]) -> LambdaLR:
    """A ``LambdaLR`` setting the learning rate of update ``k`` (1-based) to ``schedule(k)``.

    The optimizer's base learning rate must be 1.0, so that the multiplier is the learning rate itself. Call
    ``scheduler.step()`` after each ``optimizer.step()``. The schedule itself is not part of the scheduler's
    ``state_dict`` (only the step count is), so a resumed run follows the schedule it is given.
    """
    for group in optimizer.param_groups:
        if group["lr"] != 1.0:
            raise ValueError(f"build_scheduler needs the optimizer's base lr to be 1.0, got {group['lr']}")
    return LambdaLR(optimizer, lambda index: schedule(index + 1))
