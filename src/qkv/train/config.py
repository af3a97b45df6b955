"""The options of :func:`qkv.train.train`: frozen, validated with the shared checks of :mod:`qkv.config`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qkv.config import ConfigMixin, check, check_fractions, check_positive_ints, is_int, is_number
from qkv.train.precision import PRECISIONS
from qkv.train.schedule import ConstantSchedule, InverseSqrtSchedule, LinearDecaySchedule, NoamSchedule

SCHEDULES = ("noam", "inverse_sqrt", "linear", "constant")


@dataclass(frozen=True)
class TrainConfig(ConfigMixin):
    """Training options (defaults: the paper's, §5; deviations are flagged).

    Args:
        max_tokens: padded tokens per *global* batch (source or target, whichever is longer; §5.1 used about
            25000 + 25000 over 8 GPUs). Under DDP each rank gets about ``max_tokens / world_size``.
        accum_steps: micro-batches accumulated per optimizer step (effective batch ×accum_steps).
        max_steps, max_epochs: stop after this many optimizer steps / epochs in total (counting the run that
            is resumed). ``max_time_minutes``: stop after this wall time of the current call. At least one
            limit is required.
        lr_schedule: ``"noam"`` (Eq. 3, uses the model's d_model), ``"inverse_sqrt"`` (linear warm-up to
            ``lr``, then ∝ step^-0.5; option), ``"linear"`` (warm-up to ``lr``, then linearly down to 0 just
            after ``max_steps``, which it needs; option) or ``"constant"`` (warm-up to ``lr``; option).
        warmup_steps: 4000 in the paper.
        lr: peak learning rate for ``inverse_sqrt`` / ``constant`` (must be ``None`` for ``noam``).
        lr_scale: factor on Eq. 3 (1.0 in the paper; option).
        adam_beta1, adam_beta2, adam_eps: Adam hyper-parameters, 0.9 / 0.98 / 1e-9 (§5.3).
        weight_decay: 0 in the paper.
        label_smoothing: ε_ls = 0.1 (§5.4).
        clip_norm: clip the global gradient norm to this value (``None``: no clipping, as in the paper).
        seed: seeds torch / random / numpy (``seed + rank`` per process) and the batch shuffling.
        precision: ``"fp32"`` (the paper's, bit-for-bit), ``"bf16"`` (autocast on CUDA or CPU; option) or
            ``"auto"`` (bf16 where the device has fast native bf16, else fp32), see :mod:`qkv.train.precision`;
            weights, optimizer state and checkpoints stay fp32 either way.
        bf16: the older spelling of ``precision="bf16"`` (kept: ``True`` sets ``precision`` to ``"bf16"``).
        eval_every_steps: also validate and write ``last`` / ``best`` every N steps (besides each epoch end).
        save_every_steps: also write ``last`` and a periodic checkpoint every N steps.
        keep_checkpoints: periodic checkpoints kept under ``checkpoints/`` for averaging (§6.1: last 5).
        log_every_steps: log interval.
        progress: show a tqdm progress bar (only when stderr is a terminal).
        fsdp, activation_checkpointing: use ``qkv.train.sharding`` (options, for large models on GPUs; FSDP
            needs torchrun and shards the data like DDP).
        compile: ``torch.compile`` the training forward (dynamic shapes; one graph, see tests/test_compile.py).
    """

    max_tokens: int = 4096
    accum_steps: int = 1
    max_steps: int | None = None
    max_epochs: int | None = None
    max_time_minutes: float | None = None
    lr_schedule: str = "noam"
    warmup_steps: int = 4000
    lr: float | None = None
    lr_scale: float = 1.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_eps: float = 1e-9
    weight_decay: float = 0.0
    label_smoothing: float = 0.1
    clip_norm: float | None = None
    seed: int = 1
    bf16: bool = False
    precision: str = "fp32"
    eval_every_steps: int | None = None
    save_every_steps: int | None = None
    keep_checkpoints: int = 5
    log_every_steps: int = 100
    progress: bool = True
    fsdp: bool = False
    activation_checkpointing: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        check_positive_ints(self, ("max_tokens", "accum_steps", "keep_checkpoints", "log_every_steps"))
        for name in ("max_steps", "max_epochs", "eval_every_steps", "save_every_steps"):
            value = getattr(self, name)
            check(
                value is None or (is_int(value) and value > 0), f"{name} must be a positive int or None, got {value!r}"
            )
        for name in ("bf16", "progress", "fsdp", "activation_checkpointing", "compile"):
            check(isinstance(getattr(self, name), bool), f"{name} must be true or false, got {getattr(self, name)!r}")
        check(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.bf16:
            object.__setattr__(self, "precision", "bf16")  # the alias
        check(
            self.max_time_minutes is None or (is_number(self.max_time_minutes) and self.max_time_minutes > 0),
            f"max_time_minutes must be > 0 or None, got {self.max_time_minutes!r}",
        )
        check(
            any(v is not None for v in (self.max_steps, self.max_epochs, self.max_time_minutes)),
            "set at least one of max_steps, max_epochs, max_time_minutes (training would never stop)",
        )
        check(self.lr_schedule in SCHEDULES, f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
        check(
            is_int(self.warmup_steps) and self.warmup_steps >= 0,
            f"warmup_steps must be an int >= 0, got {self.warmup_steps!r}",
        )
        check(is_int(self.seed), f"seed must be an int, got {self.seed!r}")
        if self.lr_schedule == "noam":
            check(self.lr is None, "lr is the peak of inverse_sqrt/constant; noam follows Eq. 3 (use lr_scale)")
            check(self.warmup_steps > 0, "the noam schedule needs warmup_steps > 0")
        else:
            check(
                is_number(self.lr) and self.lr > 0,
                f"lr_schedule={self.lr_schedule!r} needs lr > 0, got {self.lr!r}",
            )
        if self.lr_schedule == "linear":
            check(self.max_steps is not None, "the linear schedule decays to 0 after max_steps: set max_steps")
            check(
                self.warmup_steps <= self.max_steps,
                f"the linear schedule needs warmup_steps <= max_steps, got {self.warmup_steps} > {self.max_steps}",
            )
        for name in ("lr_scale", "adam_eps"):
            check(
                is_number(getattr(self, name)) and getattr(self, name) > 0,
                f"{name} must be > 0, got {getattr(self, name)!r}",
            )
        check_fractions(self, ("adam_beta1", "adam_beta2", "label_smoothing"))
        check(
            is_number(self.weight_decay) and self.weight_decay >= 0,
            f"weight_decay must be >= 0, got {self.weight_decay!r}",
        )
        check(
            self.clip_norm is None or (is_number(self.clip_norm) and self.clip_norm > 0),
            f"clip_norm must be > 0 or None, got {self.clip_norm!r}",
        )

    def schedule(self, d_model: int) -> Callable[[int], float]:
        """The learning rate as a function of the (1-based) step."""
        if self.lr_schedule == "noam":
            return NoamSchedule(d_model, self.warmup_steps, self.lr_scale)
        if self.lr_schedule == "inverse_sqrt":
            return InverseSqrtSchedule(self.lr, self.warmup_steps)
        if self.lr_schedule == "linear":
            return LinearDecaySchedule(self.lr, self.warmup_steps, self.max_steps)
        return ConstantSchedule(self.lr, self.warmup_steps)
