"""MLM pre-training: BERT's 80/10/10 corruption, the loss on chosen positions only, fine-tuning."""

from __future__ import annotations

import pytest
import torch

from qkv.models.classifier import ClassifierConfig, TextClassifier
from qkv.models.mlm import MaskedLanguageModel
from qkv.tasks.text_classification.mlm import (
    IGNORE,
    MLMConfig,
    load_pretrained_encoder,
    mask_tokens,
    mlm_loss,
    pretrain_mlm,
)
from qkv.train.checkpoint import save_checkpoint

V, MASK = 60, 59




def test_masking_statistics_80_10_10():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, MASK, (400, 250), generator=g)
    tokens[:, 200:] = 0  # padding: never chosen
    inputs, targets = mask_tokens(tokens, mask_id=MASK, vocab_size=V, generator=g)
    chosen = targets != IGNORE
    real = tokens != 0
    n = chosen.sum().item()
    assert not chosen[~real].any()
    assert abs(n / real.sum().item() - 0.15) < 0.005  # 15% of real tokens (80,000 of them)
    assert torch.equal(targets[chosen], tokens[chosen])  # targets are the original ids
    masked = (inputs == MASK) & chosen
    unchanged = (inputs == tokens) & chosen
    replaced = chosen & ~masked & ~unchanged
    assert abs(masked.sum().item() / n - 0.8) < 0.01
    # a random replacement equals the original 1/55 of the time; those count as "unchanged" here
    p_same = 1 / (MASK - 4)
    assert abs(unchanged.sum().item() / n - (0.1 + 0.1 * p_same)) < 0.01
    assert abs(replaced.sum().item() / n - 0.1 * (1 - p_same)) < 0.01
    assert torch.equal(inputs[~chosen], tokens[~chosen])  # unchosen positions are untouched
    random_ids = inputs[replaced]
    assert random_ids.min() >= 4 and random_ids.max() < V and not (random_ids == MASK).any()


def test_mask_tokens_never_draws_specials_or_mask_in_middle():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(4, 20, (200, 100), generator=g)
    tokens[tokens == 10] = 11
    inputs, targets = mask_tokens(tokens, mask_id=10, vocab_size=20, mask_prob=0.5, generator=g)
    replaced = (targets != IGNORE) & (inputs != 10) & (inputs != tokens)
    assert replaced.any() and inputs[replaced].min() >= 4 and inputs[replaced].max() <= 19
    assert not (inputs[replaced] == 10).any()


def test_loss_ignores_unchosen_positions():
    logits = torch.randn(2, 5, V)
    targets = torch.full((2, 5), IGNORE)
    targets[0, 1], targets[1, 3] = 7, 9
    loss = mlm_loss(logits, targets)
    expected = (
        torch.nn.functional.cross_entropy(logits[0, 1:2], torch.tensor([7]))
        + torch.nn.functional.cross_entropy(logits[1, 3:4], torch.tensor([9]))
    ) / 2
    assert torch.allclose(loss, expected)
    logits2 = logits.clone()
    logits2[0, 0] += 100.0  # change the logits of an unchosen position: loss and gradient there unaffected
    assert torch.allclose(mlm_loss(logits2, targets), loss)
    logits.requires_grad_(True)
    mlm_loss(logits, targets).backward()
    assert logits.grad[0, 0].abs().sum() == 0 and logits.grad[0, 1].abs().sum() > 0


def test_mlm_head_shapes_and_tying():
    model = TextClassifier(ClassifierConfig.preset("tiny", vocab_size=V, mask_id=MASK))
    mlm = MaskedLanguageModel(model)
    assert mlm(torch.randint(4, V, (3, 6))).shape == (3, 6, V)
    assert mlm.head.weight is model.embed.weight


def test_pretraining_learns_and_fine_tune_loads(tmp_path):
    # a language with structure: token t is always followed by t+1, so masked tokens are predictable
    g = torch.Generator().manual_seed(0)
    starts = torch.randint(4, 40, (300,), generator=g)
    sentences = [list(range(int(s), int(s) + 8)) for s in starts]
    config = ClassifierConfig.preset("tiny", vocab_size=V, mask_id=MASK, d_model=48)
    model = TextClassifier(config)
    history = pretrain_mlm(model, sentences, MLMConfig(epochs=12, batch_size=32, lr=5e-3, mask_prob=0.3))
    assert history[-1]["loss"] < history[0]["loss"] - 1.0
    assert history[-1]["accuracy"] > 0.3  # chance is 1/55
    with torch.no_grad():
        model.head.weight.fill_(0.5)  # mark the pre-trained head: fine-tuning must not copy it
    save_checkpoint(tmp_path / "pre", model)
    fresh = TextClassifier(config)
    left = load_pretrained_encoder(fresh, tmp_path / "pre")
    assert sorted(left) == ["head.bias", "head.weight"]
    assert torch.equal(fresh.embed.weight, model.embed.weight)
    assert not (fresh.head.weight == 0.5).any()
    wrong = TextClassifier(config.replace(d_model=64))
    with pytest.raises(ValueError, match="shape"):
        load_pretrained_encoder(wrong, tmp_path / "pre")


def test_chosen_positions_logits_match_full_logits():
    model = TextClassifier(ClassifierConfig.preset("tiny", vocab_size=V, mask_id=MASK)).eval()
    mlm = MaskedLanguageModel(model)
    inputs = torch.randint(4, V, (3, 6))
    chosen = torch.rand(3, 6) < 0.5
    assert torch.allclose(mlm(inputs, chosen), mlm(inputs)[chosen], atol=1e-5)


def test_cli_pretrain_then_fine_tune(tmp_path, capsys):
    from qkv.cli import main

    rows = ["label\tsentence"] + [
        f"1\ta great and wonderful film {i}" if i % 2 else f"0\ta dull and awful mess {i}" for i in range(40)
    ]
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "dev.tsv").write_text("label\tsentence\n1\twonderful film\n0\tawful mess\n")
    common = ["--data", str(tmp_path), "--preset", "tiny", "--vocab-size", "100", "--batch-size", "8"]
    assert main(["classify", "pretrain", "--out", str(tmp_path / "mlm"), "--epochs", "1", *common]) == 0
    assert (
        main(
            [
                "classify",
                "train",
                "--out",
                str(tmp_path / "ft"),
                "--epochs",
                "1",
                "--init",
                str(tmp_path / "mlm"),
                *common,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "fresh: head.weight, head.bias" in out and "dev accuracy" in out
    assert (
        main(
            [
                "classify",
                "train",
                "--out",
                str(tmp_path / "x"),
                "--init",
                str(tmp_path / "mlm"),
                "--pooling",
                "mean",
                *common,
            ]
        )
        == 2
    )
