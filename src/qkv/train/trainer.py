"""The training loop, §5: token-budget batches, Adam with the warm-up schedule of Eq. 3, label smoothing,
validation every epoch, checkpoints, exact resumption and data-parallel training.

Legend: B batch, S source length, T target length, V vocabulary size.

One optimizer step (§5.3):

    for each of accum_steps micro-batches:
        loss_sum, nll_sum, n = label_smoothed_cross_entropy(model(src, tgt_in), tgt_out)
        (loss_sum / total target tokens of the step).backward()
    clip the gradient norm (option) -> Adam(β1=0.9, β2=0.98, ε=1e-9) step -> lr = schedule(step)

The loop knows nothing about the task beyond "pairs of token ids in, logits out": what to measure besides the
loss (BLEU, for translation) comes in as ``bleu_fn``. Under ``torchrun`` (env ``RANK``/``WORLD_SIZE``) the
model is wrapped in DDP, or sharded with FSDP (``fsdp=True``), behind one :class:`ParallelModel`; each rank
takes its share of every global batch and the loss is normalized by the *global* token count, so the
averaged gradient equals the single-process one. Checkpoints always hold the full weights and optimizer
state, and resume with or without FSDP.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from qkv.config import ConfigError
from qkv.data.batching import TokenBudgetSampler, check_pairs, collate
from qkv.nn.modes import eval_mode
from qkv.train.checkpoint import copy_checkpoint, load_weights, save_checkpoint, save_periodic
from qkv.train.config import TrainConfig
from qkv.train.distributed import (
    DistEnv,
    all_reduce_max,
    all_reduce_sum,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
)
from qkv.train.evaluation import evaluate
from qkv.train.loss import label_smoothed_cross_entropy, perplexity
from qkv.train.parallel import ParallelModel
from qkv.train.precision import autocast, describe_precision, resolve_precision
from qkv.train.result import TrainingDiverged, TrainResult
from qkv.train.resume import restore, resume_folder, trainer_state
from qkv.train.rng import seed_everything
from qkv.train.schedule import build_scheduler

logger = logging.getLogger("qkv.train")

Pairs = Sequence[tuple[Sequence[int], Sequence[int]]]


class _Trainer:
    """The state of one :func:`train` call (see there)."""

    def __init__(self, model, train_data, valid_data, config: TrainConfig, *, env: DistEnv, device, out_dir,
                 tokenizers, bleu_fn, resume, callback, progress=None) -> None:  # fmt: skip
        self.config, self.env, self.device, self.out_dir = config, env, device, out_dir
        self.progress = progress or tqdm  # a tqdm-like factory (the CLI's knows the time budget)
        self.train_data, self.valid_data = train_data, valid_data
        self.tokenizers, self.bleu_fn, self.callback = tokenizers, bleu_fn, callback
        model_config = getattr(model, "config", None)
        self.pad_id = getattr(model_config, "pad_id", 0)
        check_pairs("train_data", train_data, getattr(model_config, "max_len", None))
        if valid_data is not None:
            check_pairs("valid_data", valid_data, getattr(model_config, "max_len", None))
        d_model = getattr(model_config, "d_model", None)
        if config.lr_schedule == "noam" and d_model is None:
            raise ConfigError("the noam schedule needs model.config.d_model; use inverse_sqrt with lr= instead")

        self.model = model.to(device)
        self.bf16 = resolve_precision(config.precision, device) == "bf16"  # fp32 weights either way
        self.sampler = TokenBudgetSampler(
            [len(s) + 1 for s, _ in train_data], [len(t) + 1 for _, t in train_data], config.max_tokens,
            shuffle=True, seed=config.seed, rank=env.rank, world_size=env.world_size,
        )  # fmt: skip
        self.step, self.best, self.metrics = 0, None, {}
        self.best_metric = None if valid_data is None else ("bleu" if bleu_fn is not None else "loss")
        seed_everything(config.seed + env.rank)
        self.last_good = resume_folder(resume, out_dir, self.model)
        if self.last_good is not None:
            load_weights(self.model, self.last_good, device)  # before sharding: the plain model's names
        self.parallel = ParallelModel(
            self.model, env, device,
            fsdp=config.fsdp, activation_checkpointing=config.activation_checkpointing, compile=config.compile,
        )  # fmt: skip
        self.schedule = config.schedule(d_model or 1)
        self.optimizer = torch.optim.Adam(
            self.parallel.parameters(),
            lr=1.0,  # the scheduler sets the actual rate
            betas=(config.adam_beta1, config.adam_beta2),
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
            # one kernel per parameter: on a GPU, and on a CPU (issue 17: ~10x less optimizer time than the loop)
            fused=device.type == "cuda" or (device.type == "cpu" and not config.fsdp) or None,
        )
        self.scheduler = build_scheduler(self.optimizer, self.schedule)
        if self.last_good is not None:
            self.step, self.best = restore(self, self.last_good)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)

    # -- one optimizer step ---------------------------------------------------------------------------------
    def train_step(self, group: list[list[int]]) -> tuple[Tensor, Tensor, int]:
        batches = [collate([self.train_data[i] for i in ix], pad_id=self.pad_id).to(self.device) for ix in group]
        local_tokens = sum(b.n_tokens for b in batches)
        total: Tensor | int = local_tokens  # normalize by the global token count: the gradient of the global batch
        if self.env.distributed:
            total = all_reduce_sum(torch.tensor(float(local_tokens), device=self.device))
        scale = self.env.world_size / total  # DDP and FSDP average gradients over ranks: undo the 1/world_size
        loss_total = torch.zeros((), device=self.device)
        nll_total = torch.zeros((), device=self.device)
        for j, batch in enumerate(batches):
            with self.parallel.no_sync(last=j == len(batches) - 1):
                with autocast(self.device, self.bf16):
                    logits = self.parallel(batch.src, batch.tgt_in)  # (B, T, V)
                loss, nll, _ = label_smoothed_cross_entropy(
                    logits, batch.tgt_out, self.config.label_smoothing, self.pad_id, grad_scale=scale
                )
                (loss * scale).backward()
            loss_total += loss.detach()
            nll_total += nll
        clip = self.config.clip_norm if self.config.clip_norm is not None else float("inf")
        self.nonfinite |= ~torch.isfinite(self.parallel.clip_grad_norm(clip))
        if not self.env.distributed:
            self.nonfinite |= ~torch.isfinite(loss_total)
        if self.device.type != "cuda":  # cheap on CPU: stop before the bad update
            self.check_finite()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss_total, nll_total, local_tokens

    def check_finite(self) -> None:
        if bool(self.nonfinite):
            where = f"; the last good checkpoint is {self.last_good}" if self.last_good else ""
            raise TrainingDiverged(
                f"training diverged: loss or gradient norm became NaN/inf by step {self.step + 1} "
                f"(epoch {self.sampler.epoch + 1}){where}. Try a lower learning rate, more warm-up steps "
                "or clip_norm."
            )

    # -- validation and checkpoints -------------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        """Validation loss over the ranks' shares (in lockstep under FSDP), then BLEU (``bleu_fn``) if given."""
        c, env = self.config, self.env
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            metrics = evaluate(
                self.model, self.valid_data, max_tokens=c.max_tokens, label_smoothing=c.label_smoothing,
                device=self.device, pad_id=self.pad_id, bf16=self.bf16, rank=env.rank, world_size=env.world_size,
                lockstep=self.parallel.sharded,
            )  # fmt: skip
            if self.bleu_fn is not None:
                # Under FSDP every decoding step all-gathers weights, so each rank decodes all sentences (decoding
                # stops when a batch has ended, which depends on its sentences) and rank 0's BLEU counts.
                bleu = None
                if env.is_main or self.parallel.sharded:
                    with eval_mode(self.model, inference=False):
                        bleu = float(self.bleu_fn(self.model))
                metrics["bleu"] = broadcast_object(bleu)
        return metrics

    def improved(self, metrics: dict[str, float]) -> bool:
        if self.best_metric is None:
            return False
        value = metrics[self.best_metric]
        better = self.best is None or (value > self.best if self.best_metric == "bleu" else value < self.best)
        if better:
            self.best = value
        return better

    def checkpoint(self, *, validate: bool, periodic: bool) -> None:
        """Validate (if asked and there is validation data), then write ``last`` (+ periodic, + ``best``)."""
        self.check_finite()
        improved = False
        if validate and self.valid_data is not None and self._validated_at != self.step:
            self._validated_at = self.step
            self.metrics = self.validate()
            improved = self.improved(self.metrics)
            if self.env.is_main:
                shown = " | ".join(f"{k} {v:.4g}" for k, v in self.metrics.items())
                logger.info("valid | step %d | epoch %d | %s%s", self.step, self.sampler.epoch, shown,
                            " | best" if improved else "")  # fmt: skip
                self.emit({"event": "valid", "step": self.step, "epoch": self.sampler.epoch, **self.metrics})
        if self.out_dir is None:
            return
        need_last = self._saved_at != self.step or improved
        need_periodic = periodic and self._periodic_at != self.step
        if not (need_last or need_periodic):
            return
        weights, optimizer_state = self.parallel.full_state(self.optimizer)  # collective under FSDP
        state = trainer_state(self, optimizer_state)  # collective
        if self.env.is_main:
            last = save_checkpoint(
                self.out_dir / "last", self.model, train_config=self.config.to_dict(), step=self.step,
                epoch=self.sampler.epoch, metrics=self.metrics, tokenizers=self.tokenizers, trainer_state=state,
                weights=weights,
            )  # fmt: skip
            if need_periodic:
                save_periodic(last, self.out_dir, self.step, self.config.keep_checkpoints)
            if improved:
                copy_checkpoint(last, self.out_dir / "best")
            self.emit({"event": "checkpoint", "step": self.step, "path": str(last), "best": improved})
        self.last_good = self.out_dir / "last"
        self._saved_at = self.step
        if need_periodic:
            self._periodic_at = self.step

    def emit(self, event: dict[str, Any]) -> None:
        if self.callback is not None:
            self.callback(event)

    # -- limits ---------------------------------------------------------------------------------------------
    def limit_reached(self, start: float) -> str | None:
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

    def total_steps(self) -> int | None:
        per_epoch = math.ceil(len(self.sampler) / self.config.accum_steps)
        c = self.config
        totals = [n for n in (c.max_steps, c.max_epochs and c.max_epochs * per_epoch) if n is not None]
        return min(totals) if totals else None

    # -- the loop -------------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        c, env = self.config, self.env
        self._validated_at = self._saved_at = self._periodic_at = -1
        start = time.monotonic()
        show = c.progress and env.is_main and sys.stderr.isatty()
        bar = self.progress(total=self.total_steps(), initial=self.step, unit="step", disable=not show,
                            dynamic_ncols=True)  # fmt: skip
        window = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss, nll, tokens since last log
        window_start, train_loss = time.monotonic(), None
        self.parallel.train()
        if env.is_main:
            logger.info("training: %d pairs, %d batches/epoch, max_tokens %d (global, %d ranks), from step %d",
                        len(self.train_data), len(self.sampler), c.max_tokens, env.world_size, self.step)  # fmt: skip
            logger.info("%s", describe_precision(c.precision, self.device))
        try:
            stopped_by = self.limit_reached(start)
            while stopped_by is None:
                batches = iter(self.sampler)
                while stopped_by is None and (group := list(islice(batches, c.accum_steps))):
                    loss, nll, tokens = self.train_step(group)
                    window += torch.stack([loss.double(), nll.double(), window.new_tensor(float(tokens))])
                    lr = self.optimizer.param_groups[0]["lr"]
                    bar.update(1)
                    if self.callback is not None:
                        self.emit({"event": "step", "step": self.step, "epoch": self.sampler.epoch,
                                   "loss": (loss / max(tokens, 1)).item(), "lr": lr, "tokens": tokens})  # fmt: skip
                    if self.step % c.log_every_steps == 0 or (show and self.step % 10 == 0):
                        train_loss = self.log(window, window_start, lr, bar)
                        if self.step % c.log_every_steps == 0:
                            window.zero_()
                            window_start = time.monotonic()
                    if c.eval_every_steps and self.step % c.eval_every_steps == 0:
                        self.checkpoint(validate=True, periodic=False)
                    if c.save_every_steps and self.step % c.save_every_steps == 0:
                        self.checkpoint(validate=False, periodic=True)
                    stopped_by = self.limit_reached(start)
                if stopped_by is not None:
                    break
                # end of an epoch: the sampler moves on first, so that `last` resumes with the next epoch
                self.sampler.set_epoch(self.sampler.epoch + 1)
                self.checkpoint(validate=True, periodic=True)
                stopped_by = self.limit_reached(start)
            self.checkpoint(validate=True, periodic=True)
        finally:
            bar.close()
        barrier()
        out = self.out_dir
        result = TrainResult(
            steps=self.step, epochs=self.sampler.epoch, elapsed_seconds=time.monotonic() - start,
            stopped_by=stopped_by, best_metric=self.best_metric, best_value=self.best, metrics=dict(self.metrics),
            train_loss=train_loss, out_dir=out, last_checkpoint=out / "last" if out is not None else None,
            best_checkpoint=out / "best" if out is not None and self.best is not None else None,
        )  # fmt: skip
        if env.is_main:
            logger.info("done: %s", result.summary())
        return result

    def log(self, window: Tensor, window_start: float, lr: float, bar) -> float | None:
        """Log the window's loss (reduced over ranks at log steps); returns the per-token loss."""
        full = self.step % self.config.log_every_steps == 0
        loss_sum, nll_sum, tokens = (all_reduce_sum(window.clone()) if full else window).tolist()
        if tokens == 0:
            return None
        loss, nll = loss_sum / tokens, nll_sum / tokens
        tok_per_s = tokens / max(time.monotonic() - window_start, 1e-9) * (1 if full else self.env.world_size)
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tok_per_s:,.0f}", refresh=False)
        if full:
            self.check_finite()
        if full and self.env.is_main:
            logger.info("train | step %d | epoch %d | loss %.4f | nll %.4f | ppl %.2f | lr %.3e | %.0f tok/s",
                        self.step, self.sampler.epoch + 1, loss, nll, perplexity(nll), lr, tok_per_s)  # fmt: skip
            self.emit({"event": "log", "step": self.step, "epoch": self.sampler.epoch + 1, "loss": loss, "nll": nll,
                       "ppl": perplexity(nll), "lr": lr, "tokens_per_second": tok_per_s})  # fmt: skip
        return loss


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
    progress: Callable[..., Any] | None = None,
) -> TrainResult:
    """Train ``model`` on sentence pairs (§5) and return a :class:`TrainResult`.

    Args:
        model: any encoder-decoder with ``model(src (B, S), tgt_in (B, T)) -> logits (B, T, V)``, e.g.
            :class:`qkv.Transformer`; its ``config`` (``to_dict()``, ``d_model``, ``pad_id``, ``max_len``) is
            used when present. Trained in place.
        train_data, valid_data: sequences of ``(source ids, target ids)`` without BOS/EOS (see
            :func:`~qkv.data.batching.collate`); ``valid_data=None`` skips validation (no ``best``).
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
            ``"checkpoint"``. Log lines also go to ``logging.getLogger("qkv.train")``. Sinks for these events:
            :mod:`qkv.train.metrics`.
        progress: makes the progress bar, called as ``tqdm`` is (``total=``, ``initial=``, ``disable=`` …);
            default ``tqdm``. Shown only with ``config.progress`` on a terminal.

    Speed on a CPU: call :func:`qkv.train.process.set_up_process` first thing in the program, as the ``qkv``
    command does (freed memory stays in the process; oneDNN keeps the bf16 kernels of every batch shape,
    1.36× on the Multi30k recipe, issue 17). It changes the process, so the library does not do it for you.

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
        out = Path(out_dir) if out_dir is not None else None
        trainer = _Trainer(model, train_data, valid_data, config, env=env, device=dev, out_dir=out,
                           tokenizers=tokenizers, bleu_fn=bleu_fn, resume=resume,
                           callback=callback if env.is_main else None, progress=progress)  # fmt: skip
        return trainer.run()
    finally:
        cleanup(created)
