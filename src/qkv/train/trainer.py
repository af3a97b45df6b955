"""The training loop, §5: token-budget batches, Adam with the warm-up schedule of Eq. 3, label smoothing,
validation every epoch, checkpoints, exact resumption and data-parallel training.

Legend: B batch, S source length, T target length, V vocabulary size.

One optimizer step (§5.3):

    for each of accum_steps micro-batches:
        loss_sum, nll_sum, n = label_smoothed_cross_entropy(model(src, tgt_in), tgt_out)
        (loss_sum / total target tokens of the step).backward()
    clip the gradient norm (option) -> Adam(β1=0.9, β2=0.98, ε=1e-9) step -> lr = schedule(step)

Under ``torchrun`` (env ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) the model is wrapped in DDP, or sharded with
FSDP (``fsdp=True``), and each rank takes its share of every global batch (see
:class:`~qkv.train.batching.TokenBudgetSampler`: every rank runs the same number of forward/backward passes,
which FSDP's collectives need); the loss is normalized by the *global* token count so the averaged gradient
equals the single-process one. Checkpoints of an FSDP run hold the full weights and optimizer state, as
those of a plain run do (:func:`qkv.train.sharding.gather_full_state`), and resume with or without FSDP.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from qkv.config import ConfigError, ConfigMixin
from qkv.train.batching import Batch, TokenBudgetSampler, collate
from qkv.train.checkpoint import (
    CheckpointError,
    copy_checkpoint,
    load_trainer_state,
    load_weights,
    model_arch,
    model_config_dict,
    read_config,
    recover,
    save_checkpoint,
)
from qkv.train.distributed import (
    DistEnv,
    all_gather_object,
    all_reduce_max,
    all_reduce_sum,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
    wrap_ddp,
)
from qkv.train.loss import label_smoothed_cross_entropy, perplexity
from qkv.train.schedule import ConstantSchedule, InverseSqrtSchedule, NoamSchedule, build_scheduler

logger = logging.getLogger("qkv.train")

Pairs = Sequence[tuple[Sequence[int], Sequence[int]]]
SCHEDULES = ("noam", "inverse_sqrt", "constant")


class TrainingDiverged(RuntimeError):
    """The loss (or gradient norm) became NaN or infinite; the last good checkpoint is left untouched."""


@dataclass(frozen=True)
class TrainConfig(ConfigMixin):
    """Training options (defaults: the paper's, §5; deviations are flagged).

    Args:
        max_tokens: padded tokens per *global* batch (source or target, whichever is longer; §5.1 used about
            25000 + 25000 over 8 GPUs). Under DDP each rank gets about ``max_tokens / world_size``.
        max_sentences: optional cap on sentences per batch.
        accum_steps: micro-batches accumulated per optimizer step (effective batch ×accum_steps).
        max_steps, max_epochs: stop after this many optimizer steps / epochs in total (counting the run that
            is resumed). ``max_time_minutes``: stop after this wall time of the current call. At least one
            limit is required.
        lr_schedule: ``"noam"`` (Eq. 3, uses the model's d_model), ``"inverse_sqrt"`` (linear warm-up to
            ``lr``, then ∝ step^-0.5; option) or ``"constant"`` (warm-up to ``lr``; option).
        warmup_steps: 4000 in the paper.
        lr: peak learning rate for ``inverse_sqrt`` / ``constant`` (must be ``None`` for ``noam``).
        lr_scale: factor on Eq. 3 (1.0 in the paper; option).
        adam_beta1, adam_beta2, adam_eps: Adam hyper-parameters, 0.9 / 0.98 / 1e-9 (§5.3).
        weight_decay: 0 in the paper.
        label_smoothing: ε_ls = 0.1 (§5.4).
        clip_norm: clip the global gradient norm to this value (``None``: no clipping, as in the paper).
        seed: seeds torch / random / numpy (``seed + rank`` per process) and the batch shuffling.
        bf16: bf16 autocast on CUDA (ignored on CPU; option).
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
    max_sentences: int | None = None
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
    eval_every_steps: int | None = None
    save_every_steps: int | None = None
    keep_checkpoints: int = 5
    log_every_steps: int = 100
    progress: bool = True
    fsdp: bool = False
    activation_checkpointing: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        for name in ("max_tokens", "accum_steps", "keep_checkpoints", "log_every_steps"):
            value = getattr(self, name)
            check(isinstance(value, int) and value > 0, f"{name} must be a positive int, got {value!r}")
        for name in ("max_sentences", "max_steps", "max_epochs", "eval_every_steps", "save_every_steps"):
            value = getattr(self, name)
            check(
                value is None or (isinstance(value, int) and value > 0),
                f"{name} must be > 0 or None, got {value!r}",
            )
        check(
            self.max_time_minutes is None or self.max_time_minutes > 0,
            f"max_time_minutes must be > 0 or None, got {self.max_time_minutes!r}",
        )
        check(
            any(v is not None for v in (self.max_steps, self.max_epochs, self.max_time_minutes)),
            "set at least one of max_steps, max_epochs, max_time_minutes (training would never stop)",
        )
        check(
            self.lr_schedule in SCHEDULES, f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}"
        )
        check(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.lr_schedule == "noam":
            check(
                self.lr is None, "lr is the peak of inverse_sqrt/constant; noam follows Eq. 3 (use lr_scale)"
            )
            check(self.warmup_steps > 0, "the noam schedule needs warmup_steps > 0")
        else:
            check(
                self.lr is not None and self.lr > 0,
                f"lr_schedule={self.lr_schedule!r} needs lr > 0, got {self.lr}",
            )
        check(self.lr_scale > 0, f"lr_scale must be > 0, got {self.lr_scale}")
        check(0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1, "adam betas must be in [0, 1)")
        check(self.adam_eps > 0, f"adam_eps must be > 0, got {self.adam_eps}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        check(0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        check(
            self.clip_norm is None or self.clip_norm > 0,
            f"clip_norm must be > 0 or None, got {self.clip_norm}",
        )

    def schedule(self, d_model: int) -> Callable[[int], float]:
        """The learning rate as a function of the (1-based) step."""
        if self.lr_schedule == "noam":
            return NoamSchedule(d_model, self.warmup_steps, self.lr_scale)
        if self.lr_schedule == "inverse_sqrt":
            return InverseSqrtSchedule(self.lr, self.warmup_steps)
        return ConstantSchedule(self.lr, self.warmup_steps)


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


# -- evaluation --------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Pairs,
    *,
    max_tokens: int = 4096,
    label_smoothing: float = 0.1,
    device: str | torch.device | None = None,
    pad_id: int = 0,
    bf16: bool = False,
    rank: int = 0,
    world_size: int = 1,
    lockstep: bool = False,
) -> dict[str, float]:
    """Validation loss of ``model`` on ``data`` (pairs of source/target ids without BOS/EOS).

    With ``world_size > 1`` (inside a process group) rank r evaluates batches r, r + world_size, … and the
    sums are reduced over ranks. Ranks may then run different numbers of batches: pass the unwrapped model
    (not DDP), or ``lockstep=True`` for an FSDP model, whose every forward is a collective: each rank then
    runs ``ceil(batches / world_size)`` forwards, re-running a batch without counting it when it has none left.

    Returns:
        ``{"loss": smoothed loss per token, "nll": NLL per token, "ppl": perplexity, "tokens": N}``.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    sampler = TokenBudgetSampler(
        [len(s) + 1 for s, _ in data], [len(t) + 1 for _, t in data], max_tokens, shuffle=False
    )
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss, nll, tokens
    batches = list(sampler)
    mine = batches[rank::world_size]
    runs = math.ceil(len(batches) / world_size) if lockstep else len(mine)
    for j in range(runs):
        counted = j < len(mine)
        batch = collate([data[i] for i in (mine[j] if counted else batches[0])], pad_id=pad_id).to(device)
        with _autocast(device, bf16):
            logits = model(batch.src, batch.tgt_in)  # (B, T, V)
        loss, nll, n = label_smoothed_cross_entropy(logits, batch.tgt_out, label_smoothing, pad_id)
        if counted:
            totals += torch.stack([loss.double(), nll.double(), n.double()])
    model.train(was_training)
    if world_size > 1:
        all_reduce_sum(totals)
    loss_sum, nll_sum, tokens = totals.tolist()
    tokens = max(tokens, 1.0)
    return {
        "loss": loss_sum / tokens,
        "nll": nll_sum / tokens,
        "ppl": perplexity(nll_sum / tokens),
        "tokens": int(tokens),
    }


def greedy_bleu(
    sources: Sequence[Sequence[int]],
    references: Sequence[str],
    detokenize: Callable[[list[int]], str],
    *,
    max_len_b: int = 50,
    batch_size: int = 64,
) -> Callable[[nn.Module], float]:
    """A ``bleu_fn`` for :func:`train`: greedy-decode ``sources``, score against ``references`` (sacreBLEU).

    Args:
        sources: source token ids per sentence (without EOS; it is appended as in training).
        references: reference translations (detokenized text).
        detokenize: target ids -> text (e.g. ``tokenizers.tgt.decode``).
        max_len_b: output length limit = source length + ``max_len_b`` (§6.1).
        batch_size: sentences decoded together.
    """
    if len(sources) != len(references):
        raise ValueError(f"greedy_bleu: {len(sources)} sources but {len(references)} references")

    def bleu(model: nn.Module) -> float:
        from qkv.decode import decode_corpus
        from qkv.scoring import score

        hyps = decode_corpus(model, sources, max_len_b=max_len_b, batch_size=batch_size)
        return float(score([detokenize(ids) for ids in hyps], list(references)).bleu)

    return bleu


# -- helpers -----------------------------------------------------------------------------------------------
def _autocast(device: torch.device, bf16: bool):
    if bf16 and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), Python's ``random`` and numpy."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def rng_state() -> dict[str, Any]:
    """The RNG states of torch / CUDA / random / numpy as tensors and plain values (``weights_only``-safe)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached"])
    )
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _check_data(name: str, data: Pairs, max_len: int | None) -> None:
    if len(data) == 0:
        raise ValueError(f"{name} is empty")
    for i, pair in enumerate(data):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(
                f"{name}[{i}]: expected a (source ids, target ids) pair, got {type(pair).__name__}"
            )
        if max_len is not None:
            for side, ids in zip(("source", "target"), pair):
                if len(ids) + 1 > max_len:
                    raise ValueError(
                        f"{name}[{i}]: {side} has {len(ids)} tokens (+1 for BOS/EOS), more than the model's "
                        f"max_len={max_len}: filter long sentences or raise max_len"
                    )


def _sharding():
    try:
        from qkv.train import sharding
    except ImportError as err:
        raise ConfigError(
            f"fsdp / activation_checkpointing need qkv.train.sharding, which cannot be imported: {err}"
        ) from err
    return sharding


# -- the loop ----------------------------------------------------------------------------------------------
class _Trainer:
    """The state of one :func:`train` call (see there)."""

    def __init__(
        self,
        model: nn.Module,
        train_data: Pairs,
        valid_data: Pairs | None,
        config: TrainConfig,
        *,
        env: DistEnv,
        device: torch.device,
        out_dir: Path | None,
        tokenizers: Any,
        bleu_fn: Callable[[nn.Module], float] | None,
        resume: bool | str | Path,
        callback: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.config, self.env, self.device, self.out_dir = config, env, device, out_dir
        self.train_data, self.valid_data = train_data, valid_data
        self.tokenizers, self.bleu_fn, self.callback = tokenizers, bleu_fn, callback
        model_config = getattr(model, "config", None)
        self.pad_id = getattr(model_config, "pad_id", 0)
        max_len = getattr(model_config, "max_len", None)
        _check_data("train_data", train_data, max_len)
        if valid_data is not None:
            _check_data("valid_data", valid_data, max_len)

        self.model = model.to(device)
        self.sampler = TokenBudgetSampler(
            [len(s) + 1 for s, _ in train_data],
            [len(t) + 1 for _, t in train_data],
            config.max_tokens,
            shuffle=True,
            seed=config.seed,
            rank=env.rank,
            world_size=env.world_size,
            max_sentences=config.max_sentences,
        )
        self.step = 0
        self.best: float | None = None
        self.metrics: dict[str, float] = {}
        self.best_metric = None if valid_data is None else ("bleu" if bleu_fn is not None else "loss")
        self.last_good: Path | None = None
        seed_everything(config.seed + env.rank)

        resume_dir = self._resume_dir(resume)
        state = None
        if resume_dir is not None:
            self._check_resumable(resume_dir)
            load_weights(self.model, resume_dir, device)
            state = load_trainer_state(resume_dir)
            self.last_good = resume_dir

        if config.activation_checkpointing:
            _sharding().apply_activation_checkpointing(self.model)  # in place
        # the sharded model (FSDP2: self.model itself, sharded in place; FSDP1: a wrapper), None without FSDP
        self.fsdp_model: nn.Module | None = None
        if config.fsdp:
            self.fsdp_model = self.wrapped = _sharding().wrap_fsdp(self.model)
            if bleu_fn is not None and self.fsdp_model is not self.model:
                raise ConfigError(
                    "bleu_fn under fsdp needs FSDP2 (torch >= 2.6): the FSDP1 fallback can only run forward, "
                    "not the encode/decode calls of decoding"
                )
        else:
            self.wrapped = wrap_ddp(self.model, env, device)
        if config.compile:
            self.wrapped = torch.compile(self.wrapped, dynamic=True)

        d_model = getattr(model_config, "d_model", None)
        if config.lr_schedule == "noam" and d_model is None:
            raise ConfigError(
                "the noam schedule needs model.config.d_model; use inverse_sqrt with lr= instead"
            )
        self.schedule = config.schedule(d_model or 1)
        self.optimizer = torch.optim.Adam(
            self.wrapped.parameters(),
            lr=1.0,  # the scheduler sets the actual rate
            betas=(config.adam_beta1, config.adam_beta2),
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
            fused=device.type == "cuda" or None,  # one kernel for every parameter on a GPU
        )
        self.scheduler = build_scheduler(self.optimizer, self.schedule)
        if state is not None:
            self._load_state(state)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)

    # -- resuming -------------------------------------------------------------------------------------------
    def _resume_dir(self, resume: bool | str | Path) -> Path | None:
        if resume is False or resume is None:
            return None
        if resume is True:
            if self.out_dir is None:
                raise ValueError("resume=True needs out_dir (the checkpoint is out_dir/last)")
            folder = self.out_dir / "last"
        else:
            folder = Path(resume)
        recover(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"no checkpoint to resume from at {folder}")
        return folder

    def _check_resumable(self, folder: Path) -> None:
        saved = read_config(folder)
        arch, mine = model_arch(self.model), model_config_dict(self.model)
        if saved.get("arch", arch) != arch:
            raise CheckpointError(f"{folder}: checkpoint is a {saved.get('arch')!r} model, this is {arch!r}")
        if mine is not None and saved.get("model") is not None and saved["model"] != mine:
            diff = sorted(k for k in set(mine) | set(saved["model"]) if mine.get(k) != saved["model"].get(k))
            changes = ", ".join(f"{k}: {saved['model'].get(k)!r} -> {mine.get(k)!r}" for k in diff)
            raise CheckpointError(
                f"{folder / 'config.json'}: model config differs from the checkpoint's ({changes})"
            )

    def _load_state(self, state: dict[str, Any]) -> None:
        if self.fsdp_model is not None:  # collective: each rank keeps its shards of the full state
            _sharding().load_full_optimizer_state(self.fsdp_model, self.optimizer, state["optimizer"])
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        self.step = int(state["step"])
        self.best = state.get("best")
        # follow the schedule of *this* config from the restored step (it may have changed)
        self.scheduler.last_epoch = self.step
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule(self.step + 1)
        rngs = state["rng"]
        if len(rngs) == self.env.world_size:
            set_rng_state(rngs[self.env.rank])
        else:
            logger.warning("resuming with %d ranks instead of %d: reseeding", self.env.world_size, len(rngs))
            seed_everything(self.config.seed + self.env.rank + 7919 * self.step)

    def _trainer_state(self, optimizer_state: dict[str, Any] | None = None) -> dict[str, Any]:
        """Everything but the weights that resuming needs (``optimizer_state``: the full one under FSDP)."""
        rngs = all_gather_object(rng_state())  # collective: every rank calls it
        return {
            "optimizer": self.optimizer.state_dict() if optimizer_state is None else optimizer_state,
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "step": self.step,
            "best": self.best,
            "rng": rngs,
        }

    # -- one optimizer step ---------------------------------------------------------------------------------
    def _train_step(self, group: list[list[int]]) -> tuple[Tensor, Tensor, int]:
        batches: list[Batch] = [
            collate([self.train_data[i] for i in indices], pad_id=self.pad_id).to(
                self.device, non_blocking=True
            )
            for indices in group
        ]
        local_tokens = sum(b.n_tokens for b in batches)
        if self.env.distributed:  # normalize by the global token count: the gradient of the global batch
            total: Tensor | int = all_reduce_sum(torch.tensor(float(local_tokens), device=self.device))
        else:
            total = local_tokens
        scale = self.env.world_size / total  # DDP and FSDP average gradients over ranks: undo the 1/world_size
        loss_total = torch.zeros((), device=self.device)
        nll_total = torch.zeros((), device=self.device)
        no_sync = getattr(self.wrapped, "no_sync", None)  # DDP: reduce the gradients only after the last one
        for j, batch in enumerate(batches):
            last = j == len(batches) - 1
            sync = no_sync() if (no_sync is not None and not last) else nullcontext()
            with sync:
                with _autocast(self.device, self.config.bf16):
                    logits = self.wrapped(batch.src, batch.tgt_in)  # (B, T, V)
                loss, nll, _ = label_smoothed_cross_entropy(
                    logits, batch.tgt_out, self.config.label_smoothing, self.pad_id
                )
                (loss * scale).backward()
            loss_total += loss.detach()
            nll_total += nll
        max_norm = self.config.clip_norm if self.config.clip_norm is not None else float("inf")
        clip = getattr(self.wrapped, "clip_grad_norm_", None)  # FSDP has its own
        grad_norm = (
            clip(max_norm)
            if clip is not None
            else nn.utils.clip_grad_norm_(self.wrapped.parameters(), max_norm)
        )
        if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor, replicated on every rank
            grad_norm = grad_norm.full_tensor()
        self.nonfinite |= ~torch.isfinite(grad_norm)
        if not self.env.distributed:
            self.nonfinite |= ~torch.isfinite(loss_total)
        if self.device.type != "cuda":  # cheap on CPU: stop before the bad update
            self._check_finite()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss_total, nll_total, local_tokens

    def _check_finite(self) -> None:
        if bool(self.nonfinite):
            where = f"; the last good checkpoint is {self.last_good}" if self.last_good else ""
            raise TrainingDiverged(
                f"training diverged: loss or gradient norm became NaN/inf by step {self.step + 1} "
                f"(epoch {self.sampler.epoch + 1}){where}. Try a lower learning rate, more warm-up steps "
                "or clip_norm."
            )

    # -- validation and checkpoints -------------------------------------------------------------------------
    def _validate(self) -> dict[str, float]:
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            fsdp = self.fsdp_model is not None
            metrics = evaluate(  # the batches are shared out over the ranks (in lockstep under FSDP)
                self.fsdp_model if fsdp else self.model,
                self.valid_data,
                max_tokens=self.config.max_tokens,
                label_smoothing=self.config.label_smoothing,
                device=self.device,
                pad_id=self.pad_id,
                bf16=self.config.bf16,
                rank=self.env.rank,
                world_size=self.env.world_size,
                lockstep=fsdp,
            )
            if self.bleu_fn is not None:
                bleu = None
                # FSDP: every decoding step all-gathers the weights, so every rank must take the same steps.
                # Decoding stops when all sentences of a batch have ended, which depends on the sentences, so the
                # ranks cannot split the sources: each decodes all of them (identically) and rank 0's BLEU counts.
                if self.env.is_main or fsdp:
                    was_training = self.model.training
                    self.model.eval()
                    with torch.no_grad():
                        bleu = float(self.bleu_fn(self.model))
                    self.model.train(was_training)
                metrics["bleu"] = broadcast_object(bleu)
        self.model.train()
        return metrics

    def _improved(self, metrics: dict[str, float]) -> bool:
        if self.best_metric is None:
            return False
        value = metrics[self.best_metric]
        better = self.best is None or (value > self.best if self.best_metric == "bleu" else value < self.best)
        if better:
            self.best = value
        return better

    def _checkpoint(self, *, validate: bool, periodic: bool) -> None:
        """Validate (if asked and there is validation data), then write ``last`` (+ periodic, + ``best``)."""
        self._check_finite()
        improved = False
        if validate and self.valid_data is not None and self._validated_at != self.step:
            self._validated_at = self.step
            self.metrics = self._validate()
            improved = self._improved(self.metrics)
            if self.env.is_main:
                logger.info(
                    "valid | step %d | epoch %d | %s%s",
                    self.step,
                    self.sampler.epoch,
                    " | ".join(f"{k} {v:.4g}" for k, v in self.metrics.items()),
                    " | best" if improved else "",
                )
                self._emit({"event": "valid", "step": self.step, "epoch": self.sampler.epoch, **self.metrics})
        if self.out_dir is None:
            return
        need_last = self._saved_at != self.step or improved
        need_periodic = periodic and self._periodic_at != self.step
        if not (need_last or need_periodic):
            return
        weights = optimizer_state = None
        if self.fsdp_model is not None:  # collective: full weights and optimizer state, gathered on rank 0
            weights, optimizer_state = _sharding().gather_full_state(self.fsdp_model, self.optimizer)
        state = self._trainer_state(optimizer_state)  # collective
        if self.env.is_main:
            last = save_checkpoint(
                self.out_dir / "last",
                self.model,
                train_config=self.config.to_dict(),
                step=self.step,
                epoch=self.sampler.epoch,
                metrics=self.metrics,
                tokenizers=self.tokenizers,
                trainer_state=state,
                weights=weights,
            )
            if need_periodic:
                copy_checkpoint(last, self.out_dir / "checkpoints" / f"step_{self.step:08d}")
                for old in periodic_checkpoints(self.out_dir)[: -self.config.keep_checkpoints]:
                    shutil.rmtree(old, ignore_errors=True)
            if improved:
                copy_checkpoint(last, self.out_dir / "best")
            self._emit({"event": "checkpoint", "step": self.step, "path": str(last), "best": improved})
        self.last_good = self.out_dir / "last"
        self._saved_at = self.step
        if need_periodic:
            self._periodic_at = self.step

    def _emit(self, event: dict[str, Any]) -> None:
        if self.callback is not None:
            self.callback(event)

    # -- limits ---------------------------------------------------------------------------------------------
    def _limit_reached(self, start: float) -> str | None:
        c = self.config
        if c.max_steps is not None and self.step >= c.max_steps:
            return "max_steps"
        if c.max_epochs is not None and self.sampler.epoch >= c.max_epochs:
            return "max_epochs"
        if c.max_time_minutes is not None:
            late = time.monotonic() - start >= c.max_time_minutes * 60
            if self.env.distributed:  # every rank stops at the same step (no device sync for one process)
                late = all_reduce_max(torch.tensor(float(late), device=self.device)).item() > 0
            if late:
                return "max_time"
        return None

    def _total_steps(self) -> int | None:
        per_epoch = math.ceil(len(self.sampler) / self.config.accum_steps)
        totals = []
        if self.config.max_steps is not None:
            totals.append(self.config.max_steps)
        if self.config.max_epochs is not None:
            totals.append(self.config.max_epochs * per_epoch)
        return min(totals) if totals else None

    # -- main loop ------------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        c, env = self.config, self.env
        self._validated_at = self._saved_at = self._periodic_at = -1
        start = time.monotonic()
        show = c.progress and env.is_main and sys.stderr.isatty()
        bar = tqdm(
            total=self._total_steps(), initial=self.step, unit="step", disable=not show, dynamic_ncols=True
        )
        window = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss, nll, tokens since last log
        window_start = time.monotonic()
        train_loss = None
        self.wrapped.train()
        if env.is_main:
            logger.info(
                "training: %d pairs, %d batches/epoch, max_tokens %d (global, %d ranks), from step %d",
                len(self.train_data),
                len(self.sampler),
                c.max_tokens,
                env.world_size,
                self.step,
            )
        try:
            stopped_by = self._limit_reached(start)
            while stopped_by is None:
                batches = iter(self.sampler)
                while stopped_by is None and (group := list(islice(batches, c.accum_steps))):
                    loss, nll, tokens = self._train_step(group)
                    window += torch.stack([loss.double(), nll.double(), window.new_tensor(float(tokens))])
                    lr = self.optimizer.param_groups[0]["lr"]
                    bar.update(1)
                    if self.callback is not None:
                        per_token = (loss / max(tokens, 1)).item()
                        self._emit(
                            {
                                "event": "step",
                                "step": self.step,
                                "epoch": self.sampler.epoch,
                                "loss": per_token,
                                "lr": lr,
                                "tokens": tokens,
                            }
                        )
                    if self.step % c.log_every_steps == 0 or (show and self.step % 10 == 0):
                        train_loss = self._log(window, window_start, lr, bar)
                        if self.step % c.log_every_steps == 0:
                            window.zero_()
                            window_start = time.monotonic()
                    if c.eval_every_steps and self.step % c.eval_every_steps == 0:
                        self._checkpoint(validate=True, periodic=False)
                    if c.save_every_steps and self.step % c.save_every_steps == 0:
                        self._checkpoint(validate=False, periodic=True)
                    stopped_by = self._limit_reached(start)
                if stopped_by is not None:
                    break
                # end of an epoch: the sampler moves on first, so that `last` resumes with the next epoch
                self.sampler.set_epoch(self.sampler.epoch + 1)
                self._checkpoint(validate=True, periodic=True)
                stopped_by = self._limit_reached(start)
            self._checkpoint(validate=True, periodic=True)
        finally:
            bar.close()
        barrier()
        elapsed = time.monotonic() - start
        best_dir = self.out_dir / "best" if self.out_dir is not None and self.best is not None else None
        result = TrainResult(
            steps=self.step,
            epochs=self.sampler.epoch,
            elapsed_seconds=elapsed,
            stopped_by=stopped_by,
            best_metric=self.best_metric,
            best_value=self.best,
            metrics=dict(self.metrics),
            train_loss=train_loss,
            out_dir=self.out_dir,
            last_checkpoint=self.out_dir / "last" if self.out_dir is not None else None,
            best_checkpoint=best_dir,
        )
        if env.is_main:
            logger.info("done: %s", result.summary())
        return result

    def _log(self, window: Tensor, window_start: float, lr: float, bar) -> float | None:
        """Log the window's loss (reduced over ranks at log steps); returns the per-token loss."""
        full = self.step % self.config.log_every_steps == 0
        totals = all_reduce_sum(window.clone()) if full else window
        loss_sum, nll_sum, tokens = totals.tolist()
        if tokens == 0:
            return None
        loss, nll = loss_sum / tokens, nll_sum / tokens
        tok_per_s = tokens / max(time.monotonic() - window_start, 1e-9)
        if not full:
            tok_per_s *= self.env.world_size
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tok_per_s:,.0f}", refresh=False)
        if full:
            self._check_finite()
        if full and self.env.is_main:
            logger.info(
                "train | step %d | epoch %d | loss %.4f | nll %.4f | ppl %.2f | lr %.3e | %.0f tok/s",
                self.step,
                self.sampler.epoch + 1,
                loss,
                nll,
                perplexity(nll),
                lr,
                tok_per_s,
            )
            self._emit(
                {
                    "event": "log",
                    "step": self.step,
                    "loss": loss,
                    "nll": nll,
                    "ppl": perplexity(nll),
                    "lr": lr,
                    "tokens_per_second": tok_per_s,
                }
            )
        return loss


def periodic_checkpoints(out_dir: str | Path) -> list[Path]:
    """The periodic checkpoints under ``out_dir/checkpoints``, oldest first (average the last k, §6.1)."""
    folder = Path(out_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step_"))


def train(
    model: nn.Module,
    train_data: Pairs,
    valid_data: Pairs | None,
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    tokenizers: Any = None,
    bleu_fn: Callable[[nn.Module], float] | None = None,
    resume: bool | str | Path = False,
    device: str | torch.device | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``model`` on sentence pairs (§5) and return a :class:`TrainResult`.

    Args:
        model: any encoder-decoder with ``model(src (B, S), tgt_in (B, T)) -> logits (B, T, V)``, e.g.
            :class:`qkv.Transformer`; its ``config`` (``to_dict()``, ``d_model``, ``pad_id``, ``max_len``) is
            used when present. Trained in place.
        train_data, valid_data: sequences of ``(source ids, target ids)`` without BOS/EOS (see
            :func:`~qkv.train.batching.collate`); ``valid_data=None`` skips validation (no ``best``).
        config: a :class:`TrainConfig`.
        out_dir: checkpoints go to ``out_dir/last`` (with the trainer state, for ``resume``), ``out_dir/best``
            (best validation BLEU, or loss without ``bleu_fn``) and ``out_dir/checkpoints/step_N`` (the last
            ``keep_checkpoints``, for :func:`~qkv.train.checkpoint.average_checkpoints`). ``None``: no files.
        tokenizers: saved into every checkpoint via ``tokenizers.save(folder)`` (e.g. a ``TokenizerPair``).
        bleu_fn: ``bleu_fn(model) -> float`` run on rank 0 after each validation (e.g. :func:`greedy_bleu`).
        resume: ``True`` continues from ``out_dir/last``, a path from that checkpoint. Weights, optimizer,
            schedule, sampler position and RNG states are restored, so on CPU the run continues exactly as an
            uninterrupted one would. Limits (``max_steps`` …) come from ``config`` and may be raised.
        device: default ``cuda:LOCAL_RANK`` if CUDA is available, else CPU.
        callback: called on rank 0 with event dicts: ``{"event": "step", "step", "epoch", "loss", "lr",
            "tokens"}`` after every step (this rank's loss per token), ``"log"``, ``"valid"`` (metrics) and
            ``"checkpoint"``. Log lines also go to ``logging.getLogger("qkv.train")``.

    Raises:
        TrainingDiverged: the loss became NaN/inf (the last good checkpoint is kept).

    Example:
        >>> cfg = TrainConfig(max_steps=300, lr_schedule="inverse_sqrt", lr=3e-3, warmup_steps=50,
        ...                   max_tokens=512)                                              # doctest: +SKIP
        >>> result = train(model, train_pairs, valid_pairs, cfg, out_dir="runs/copy")      # doctest: +SKIP
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    env, dev, created = init_distributed(device)
    try:
        trainer = _Trainer(
            model,
            train_data,
            valid_data,
            config,
            env=env,
            device=dev,
            out_dir=Path(out_dir) if out_dir is not None else None,
            tokenizers=tokenizers,
            bleu_fn=bleu_fn,
            resume=resume,
            callback=callback if env.is_main else None,
        )
        return trainer.run()
    finally:
        cleanup(created)
