"""What a training run returns (:class:`TrainResult`) and how it fails when the loss diverges."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class TrainingDiverged(RuntimeError):
    """The loss (or gradient norm) became NaN or infinite; the last good checkpoint is left untouched."""


@dataclass
class TrainResult:
    """What :func:`train` returns.

    ``stopped_by`` is ``"max_steps"``, ``"max_epochs"`` or ``"max_time"``; ``best_metric`` names the
    validation metric that chose ``best_checkpoint`` (``"bleu"``, higher is better, or ``"loss"``);
    ``metrics`` are the last validation results.
    """

    steps: int
    epochs: int
    elapsed_seconds: float
    stopped_by: str
    best_metric: str | None = None
    best_value: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    train_loss: float | None = None
    out_dir: Path | None = None
    last_checkpoint: Path | None = None
    best_checkpoint: Path | None = None

    def summary(self) -> str:
        where = f", best model in {self.best_checkpoint}" if self.best_checkpoint else ""
        best = f", best {self.best_metric} {self.best_value:.4g}" if self.best_value is not None else ""
        return (
            f"{self.steps} steps, {self.epochs} epochs in {self.elapsed_seconds / 60:.1f} min "
            f"(stopped by {self.stopped_by}){best}{where}"
        )
