"""Training (§5): token-budget batching, label-smoothed loss, warm-up schedule, checkpoints, the loop, DDP.

    >>> from qkv.train import TrainConfig, train                                       # doctest: +SKIP
    >>> result = train(model, train_pairs, valid_pairs, TrainConfig(max_epochs=10))  # doctest: +SKIP
"""

from qkv.train.batching import Batch, TokenBudgetSampler, collate
from qkv.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    average_checkpoints,
    load_checkpoint,
    load_state_dict,
    load_weights,
    save_checkpoint,
)
from qkv.train.loss import label_smoothed_cross_entropy, perplexity
from qkv.train.schedule import ConstantSchedule, InverseSqrtSchedule, NoamSchedule, build_scheduler
from qkv.train.trainer import (
    TrainConfig,
    TrainingDiverged,
    TrainResult,
    evaluate,
    greedy_bleu,
    periodic_checkpoints,
    train,
)

__all__ = [
    "Batch",
    "Checkpoint",
    "CheckpointError",
    "ConstantSchedule",
    "InverseSqrtSchedule",
    "NoamSchedule",
    "TokenBudgetSampler",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "average_checkpoints",
    "build_scheduler",
    "collate",
    "evaluate",
    "greedy_bleu",
    "label_smoothed_cross_entropy",
    "load_checkpoint",
    "load_state_dict",
    "load_weights",
    "periodic_checkpoints",
    "perplexity",
    "save_checkpoint",
    "train",
]
