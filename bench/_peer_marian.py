"""The peer of ``bench/peers.py``: a Hugging Face ``MarianMTModel`` trained from scratch with ``Seq2SeqTrainer``.

Legend: B batch, S source length, T target length.

What a user would write with transformers, given qkv's data: the same token ids (``src + [EOS]`` as
``input_ids``, ``tgt + [EOS]`` as ``labels``; Marian shifts the labels right behind ``decoder_start_token_id =
BOS``, so the decoder sees ``[BOS] + tgt`` exactly as qkv's ``collate`` builds it), the model sizes of a qkv
preset (``bench/train_throughput.py``'s ``MarianModel`` mapping), and ``Seq2SeqTrainer`` in its best CPU
settings: fused AdamW, ``group_by_length`` batches, bf16 autocast and eager attention when a short probe shows
they are faster.

Validation BLEU comes from :class:`TimedValidation`, a ``TrainerCallback`` that decodes the validation set
greedily on a schedule of *training* time: the clock is paused while it decodes, so evaluation is not counted.
Not part of the library; imported by ``bench/peers.py`` (``bench/`` is on ``sys.path`` there).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

import qkv
from qkv.data.batching import collate_tokens
from qkv.data.special import EOS, PAD
from qkv.decode import strip_specials
from qkv.train.precision import cpu_has_fast_bf16
from train_throughput import MarianModel  # the qkv-preset -> MarianConfig mapping of the throughput bench

Pairs = Sequence[tuple[Sequence[int], Sequence[int]]]
IGNORE = -100  # the label id the HF loss ignores


def marian_from_config(config: qkv.TransformerConfig):
    """A fresh ``MarianMTModel`` (random weights, SDPA attention until :func:`pick_precision`) with the sizes of a
    qkv ``config``."""
    return MarianModel(config).model


def features(pairs: Pairs) -> list[dict[str, list[int]]]:
    """The HF training examples of qkv's ``(source ids, target ids)`` pairs (without BOS/EOS)."""
    return [{"input_ids": [*s, EOS], "labels": [*t, EOS]} for s, t in pairs]


def collate_features(batch: list[dict[str, list[int]]], model) -> dict[str, torch.Tensor]:
    """Pad a list of :func:`features` into ``input_ids``/``attention_mask`` ``(B, S)``, ``labels`` ``(B, T)``
    and the ``decoder_input_ids`` ``(B, T)`` that ``model`` makes of them (as ``DataCollatorForSeq2Seq`` does:
    the trainer's label smoothing takes the labels away from the model)."""
    input_ids = collate_tokens([f["input_ids"] for f in batch], PAD)  # (B, S)
    labels = collate_tokens([f["labels"] for f in batch], IGNORE)  # (B, T)
    return {"input_ids": input_ids, "attention_mask": input_ids.ne(PAD), "labels": labels,
            "decoder_input_ids": model.prepare_decoder_input_ids_from_labels(labels=labels)}  # fmt: skip


def translate_ids(model, sources: Sequence[Sequence[int]], *, beam: int, max_len_b: int = 50,
                  batch_size: int = 64) -> list[list[int]]:
    """``model.generate`` over ``sources`` (ids without EOS), in length-sorted batches; returns the output ids
    without BOS/EOS/PAD, in input order. Outputs stop at source length + ``max_len_b`` (as qkv's decoders)."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out: list[list[int]] = [[] for _ in sources]
    limit = model.config.max_position_embeddings - 1
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            input_ids = collate_tokens([[*sources[i], EOS] for i in chunk], PAD)  # (B, S)
            generated = model.generate(
                input_ids=input_ids, attention_mask=input_ids.ne(PAD), num_beams=beam, do_sample=False,
                max_new_tokens=min(input_ids.size(1) + max_len_b, limit),
            )  # (B, 1 + T)
            for i, ids in zip(chunk, strip_specials(generated.tolist())):  # decoder_start is BOS: dropped
                out[i] = ids
    return out


def pick_precision(model, batch: dict[str, torch.Tensor], choice: str, steps: int = 4) -> tuple[str, dict]:
    """The peer's fastest CPU mode. ``choice`` ``"auto"``: time forward + backward of ``batch`` in fp32 and in
    bf16 autocast (only on a CPU with native bf16), each with SDPA and with eager attention (in bf16 on a CPU,
    Marian's eager attention is faster than PyTorch's fused kernel), switch ``model`` to the faster attention
    and return the faster precision with the seconds per step measured; the weights are not changed."""
    if choice != "auto":
        return choice, {}
    precisions = ("fp32", "bf16") if cpu_has_fast_bf16() else ("fp32",)

    def seconds_per_step(bf16: bool) -> float:
        times = []
        for _ in range(steps + 1):  # the first is warm-up
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(**batch).loss
            loss.backward()
            times.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
        return min(times[1:])

    model.train()
    measured = {}
    switchable = hasattr(model, "set_attn_implementation")  # transformers >= 4.48; before: SDPA only
    for attention in ("sdpa", "eager") if switchable else ("sdpa",):
        model.set_attn_implementation(attention)
        for precision in precisions:
            measured[f"{precision} {attention}"] = seconds_per_step(precision == "bf16")
    best = min(measured, key=measured.get)
    precision, attention = best.split()
    if switchable:
        model.set_attn_implementation(attention)
    return precision, {"attention": attention, "seconds_per_step": measured}


@dataclass
class TimedValidation:
    """When :func:`timed_callback` validates and stops the trainer: in training seconds (wall time less the
    time spent validating) or in steps. ``points`` collects ``{"minutes", "step", "bleu"}`` per validation.

    Args:
        total: the budget: seconds of training (``by_steps=False``) or optimizer steps.
        every: validate each time this much more training has passed (the end of the budget always validates).
        by_steps: count steps rather than seconds.
        evaluate: ``evaluate(model) -> BLEU`` (e.g. greedy decoding of the validation set).
    """

    total: float
    every: float
    evaluate: Callable[[object], float]
    by_steps: bool = False
    points: list[dict] = field(default_factory=list)
    eval_seconds: float = 0.0
    _start: float = 0.0
    _next: float = 0.0

    def begin(self) -> None:
        self._start, self._next, self.eval_seconds = time.monotonic(), self.every, 0.0

    def training_seconds(self) -> float:
        """Wall time since :meth:`begin`, less the time spent validating."""
        return time.monotonic() - self._start - self.eval_seconds

    def after_step(self, model, step: int) -> bool:
        """Validate if due; returns whether the budget is spent (training must stop)."""
        seconds = self.training_seconds()
        now = step if self.by_steps else seconds
        done = now >= self.total
        if done or now >= self._next:
            while self._next <= now:
                self._next += self.every
            t0 = time.monotonic()
            was_training = model.training
            bleu = self.evaluate(model)
            model.train(was_training)
            self.eval_seconds += time.monotonic() - t0
            self.points.append({"minutes": seconds / 60, "step": step, "bleu": bleu})
        return done


def timed_callback(schedule: TimedValidation):
    """A ``transformers.TrainerCallback`` driving ``schedule`` (validation and the stop)."""
    from transformers import TrainerCallback

    class _Callback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            schedule.begin()

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if schedule.after_step(model, state.global_step):
                control.should_training_stop = True
            return control

    return _Callback()


@dataclass(frozen=True)
class PeerRecipe:
    """The training settings the peer shares with qkv's recipe (see ``bench/peers.py``)."""

    batch_size: int  # sentences per step: qkv's average under its token budget
    lr: float
    warmup_steps: int
    label_smoothing: float = 0.1
    adam_betas: tuple[float, float] = (0.9, 0.98)
    adam_eps: float = 1e-9
    clip_norm: float = 0.0  # 0: no clipping (qkv's recipe: none)
    seed: int = 1


def train_marian(model, train_pairs: Pairs, recipe: PeerRecipe, schedule: TimedValidation, out: Path,
                 *, precision: str, max_steps: int | None = None) -> dict:
    """Train ``model`` with ``Seq2SeqTrainer`` until ``schedule`` stops it; returns the trainer's numbers."""
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    args = Seq2SeqTrainingArguments(
        output_dir=str(out), max_steps=max_steps or 10**8, per_device_train_batch_size=recipe.batch_size,
        learning_rate=recipe.lr, lr_scheduler_type="inverse_sqrt", warmup_steps=recipe.warmup_steps,
        adam_beta1=recipe.adam_betas[0], adam_beta2=recipe.adam_betas[1], adam_epsilon=recipe.adam_eps,
        weight_decay=0.0, optim="adamw_torch_fused", max_grad_norm=recipe.clip_norm,
        label_smoothing_factor=recipe.label_smoothing, train_sampling_strategy="group_by_length",
        bf16=precision == "bf16", use_cpu=True, dataloader_num_workers=0, save_strategy="no", eval_strategy="no",
        report_to="none", logging_steps=50, disable_tqdm=True, seed=recipe.seed,
    )  # fmt: skip
    trainer = Seq2SeqTrainer(
        model=model, args=args, train_dataset=features(train_pairs),
        data_collator=partial(collate_features, model=model), callbacks=[timed_callback(schedule)],
    )  # fmt: skip
    output = trainer.train()
    return {"steps": output.global_step, "train_loss": output.training_loss}
