"""Training (§5): the loop, its options, the label-smoothed loss, the warm-up schedule, checkpoints, DDP/FSDP.

    >>> from qkv.train import TrainConfig, train                                       # doctest: +SKIP
    >>> result = train(model, train_pairs, valid_pairs, TrainConfig(max_epochs=10))  # doctest: +SKIP

The loop knows no task: translation's BLEU comes in as ``bleu_fn`` (:mod:`qkv.tasks.translation`).
"""

from qkv.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    average_checkpoints,
    load_checkpoint,
    load_state_dict,
    load_weights,
    periodic_checkpoints,
    save_checkpoint,
)
from qkv.train.config import TrainConfig
from qkv.train.evaluation import evaluate
from qkv.train.loss import label_smoothed_cross_entropy, perplexity
from qkv.train.process import set_up_process
from qkv.train.result import TrainingDiverged, TrainResult
from qkv.train.schedule import ConstantSchedule, InverseSqrtSchedule, NoamSchedule, build_scheduler
from qkv.train.trainer import train

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "ConstantSchedule",
    "InverseSqrtSchedule",
    "NoamSchedule",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "average_checkpoints",
    "build_scheduler",
    "evaluate",
    "label_smoothed_cross_entropy",
    "load_checkpoint",
    "load_state_dict",
    "load_weights",
    "periodic_checkpoints",
    "perplexity",
    "save_checkpoint",
    "set_up_process",
    "train",
]
