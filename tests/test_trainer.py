"""The training loop: learning a copy task, exact resume, divergence, best-by-BLEU, limits, config checks."""

from __future__ import annotations

import json
import random

import pytest
import torch

from qkv import Transformer, TransformerConfig
from qkv.config import ConfigError
from qkv.data.batching import TokenBudgetSampler
from qkv.tasks.translation import greedy_bleu
from qkv.train import (
    TrainConfig,
    TrainingDiverged,
    evaluate,
    load_checkpoint,
    periodic_checkpoints,
    train,
)

VOCAB = 16


def copy_pairs(n: int, seed: int, min_len: int = 2, max_len: int = 7) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        seq = [rng.randrange(4, VOCAB) for _ in range(rng.randint(min_len, max_len))]
        pairs.append((seq, list(seq)))
    return pairs


def tiny_model(seed: int = 0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    cfg = TransformerConfig.preset(
        "tiny", src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, max_len=64, **overrides
    )
    return Transformer(cfg)


def config(**overrides) -> TrainConfig:
    base = dict(
        max_tokens=96,
        lr_schedule="inverse_sqrt",
        lr=3e-3,
        warmup_steps=30,
        progress=False,
        log_every_steps=50,
        seed=3,
    )
    return TrainConfig(**{**base, **overrides})


def test_copy_task_validation_loss_falls(tmp_path):
    train_pairs, valid_pairs = copy_pairs(600, seed=1), copy_pairs(60, seed=2)
    model = tiny_model()
    before = evaluate(model, valid_pairs, max_tokens=96)["nll"]
    events = []
    result = train(
        model,
        train_pairs,
        valid_pairs,
        config(max_steps=160, eval_every_steps=80, keep_checkpoints=2),
        out_dir=tmp_path,
        callback=events.append,
    )
    after = evaluate(model, valid_pairs, max_tokens=96)["nll"]
    assert before > 2.0 and after < 0.35 * before, (before, after)
    assert result.steps == 160 and result.stopped_by == "max_steps" and result.best_metric == "loss"
    assert result.metrics["nll"] == pytest.approx(after, rel=1e-4)
    valid = [e for e in events if e["event"] == "valid"]
    assert valid[0]["loss"] > valid[-1]["loss"]
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(1, 161))
    # last, best, and at most keep_checkpoints periodic ones (epoch ends + the final step)
    assert json.loads((tmp_path / "last" / "config.json").read_text())["step"] == 160
    assert (tmp_path / "best" / "model.safetensors").is_file()
    assert not (tmp_path / "best" / "trainer_state.pt").exists()
    periodic = periodic_checkpoints(tmp_path)
    assert len(periodic) == 2 and periodic[-1].name == "step_00000160"
    assert load_checkpoint(result.best_checkpoint).metrics["loss"] == pytest.approx(result.best_value)


def run_steps(tmp_path, max_steps, resume=False, **overrides):
    model = tiny_model(dropout=0.1)  # dropout: resuming must restore the RNG too
    losses = []
    cfg = config(max_steps=max_steps, accum_steps=2, max_tokens=64, **overrides)
    train(
        model,
        copy_pairs(120, seed=5),
        copy_pairs(20, seed=6),
        cfg,
        out_dir=tmp_path,
        resume=resume,
        callback=lambda e: losses.append(e["loss"]) if e["event"] == "step" else None,
    )
    return model, losses


def test_resume_reproduces_an_uninterrupted_run_exactly(tmp_path):
    full_model, full_losses = run_steps(tmp_path / "full", 30)
    _, head = run_steps(tmp_path / "split", 13)
    resumed_model, tail = run_steps(tmp_path / "split", 30, resume=True)
    assert len(full_losses) == 30 and len(head) == 13 and len(tail) == 17
    assert head + tail == full_losses  # bit-for-bit on CPU, across an epoch boundary
    for (name, a), b in zip(full_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        train(tiny_model(), copy_pairs(20, 0), None, config(max_steps=2), out_dir=tmp_path, resume=True)


class NaNAfter(Transformer):
    """Returns NaN logits from the `after`-th training forward pass on."""

    def __init__(self, cfg: TransformerConfig, after: int) -> None:
        super().__init__(cfg)
        self.calls, self.after = 0, after

    def forward(self, src, tgt, return_attention=False):
        logits = super().forward(src, tgt)
        if self.training:
            self.calls += 1
            if self.calls >= self.after:
                logits = logits * float("nan")
        return logits


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = TransformerConfig.preset("tiny", src_vocab_size=VOCAB, tgt_vocab_size=VOCAB)
    model = NaNAfter(cfg, after=6)
    with pytest.raises(TrainingDiverged, match=r"NaN/inf by step 6 .*last good checkpoint is .*last"):
        train(model, copy_pairs(200, 0), None, config(max_steps=50, save_every_steps=2), out_dir=tmp_path)
    good = load_checkpoint(tmp_path / "last")
    assert good.step == 4
    assert all(torch.isfinite(p).all() for p in good.model.parameters())
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad update was never applied


def test_best_checkpoint_follows_the_bleu_callback(tmp_path):
    scores = iter([10.0, 30.0, 20.0, 5.0, 1.0, 0.5])
    seen_modes = []

    def fake_bleu(model):
        seen_modes.append(model.training)
        return next(scores)

    events = []
    result = train(
        tiny_model(),
        copy_pairs(100, 0),
        copy_pairs(10, 1),
        config(max_steps=12, eval_every_steps=4),
        out_dir=tmp_path,
        bleu_fn=fake_bleu,
        callback=events.append,
    )
    valid = [e for e in events if e["event"] == "valid"]
    assert len(valid) >= 3 and seen_modes == [False] * len(valid)  # eval mode, once per validation
    assert [e["bleu"] for e in valid] == [10.0, 30.0, 20.0, 5.0, 1.0, 0.5][: len(valid)]
    assert result.best_metric == "bleu" and result.best_value == 30.0
    assert json.loads((tmp_path / "best" / "config.json").read_text())["step"] == valid[1]["step"]
    assert json.loads((tmp_path / "last" / "config.json").read_text())["metrics"]["bleu"] == valid[-1]["bleu"]


def test_time_and_epoch_limits():
    result = train(tiny_model(), copy_pairs(50, 0), None, config(max_time_minutes=1e-6))
    assert result.stopped_by == "max_time" and result.steps <= 1 and result.last_checkpoint is None
    pairs = copy_pairs(50, 0)
    per_epoch = len(TokenBudgetSampler([len(s) + 1 for s, _ in pairs], [len(t) + 1 for _, t in pairs], 200))
    result = train(tiny_model(), pairs, None, config(max_epochs=2, max_tokens=200))
    assert result.stopped_by == "max_epochs" and result.epochs == 2 and result.steps == 2 * per_epoch


def test_train_config_is_validated():
    with pytest.raises(ConfigError, match="unknown TrainConfig option"):
        TrainConfig.from_dict({"max_steps": 10, "learning_rate": 1e-3})
    with pytest.raises(ConfigError, match="at least one of max_steps"):
        TrainConfig()
    with pytest.raises(ConfigError, match=r"noam follows Eq\. 3"):
        TrainConfig(max_steps=1, lr=1e-3)
    with pytest.raises(ConfigError, match="needs lr"):
        TrainConfig(max_steps=1, lr_schedule="inverse_sqrt")
    cfg = TrainConfig(max_steps=5)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(AttributeError):
        cfg.max_steps = 6  # frozen


def test_too_long_examples_are_reported_with_their_index():
    model = tiny_model()  # max_len 64
    pairs = [*copy_pairs(5, 0), ([5] * 70, [5])]
    with pytest.raises(ValueError, match=r"train_data\[5\]: source has 70 tokens"):
        train(model, pairs, None, config(max_steps=1, max_tokens=200))


def test_greedy_bleu_decodes_and_scores_with_sacrebleu():
    model = tiny_model()
    sources = [[5, 6, 7], [8, 9]]
    decoded = []

    def detokenize(ids):
        decoded.append(ids)
        return "the cat sat down"

    assert greedy_bleu(sources, ["the cat sat down"] * 2, detokenize, max_len_b=3)(model) == pytest.approx(
        100.0
    )
    assert greedy_bleu(sources, ["a dog ran off"] * 2, detokenize, max_len_b=3)(model) == pytest.approx(0.0)
    assert len(decoded) == 4 and all(len(ids) <= len(sources[0]) + 1 + 3 for ids in decoded)
    assert model.training  # put back in training mode
    with pytest.raises(ValueError, match="2 sources but 1 references"):
        greedy_bleu(sources, ["x"], str)


def test_activation_checkpointing_option_gives_the_same_losses():
    losses = {}
    for flag in (False, True):
        seen = []
        train(
            tiny_model(dropout=0.1),
            copy_pairs(40, 0),
            None,
            config(max_steps=4, activation_checkpointing=flag),
            callback=lambda e, seen=seen: seen.append(e["loss"]) if e["event"] == "step" else None,
        )
        losses[flag] = seen
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)
