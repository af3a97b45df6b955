"""qkv.viz.explain: one head worked out by hand equals the model's forward pass; why √d_k; `qkv explain`."""

from __future__ import annotations

import math

import pytest
import torch

from qkv import Transformer, TransformerConfig
from qkv.cli import main
from qkv.viz.explain import explain_head, format_matrix, scaling_table, word_level_demo


def tiny(**overrides):
    torch.manual_seed(0)
    cfg = TransformerConfig.preset("tiny", src_vocab_size=30, tgt_vocab_size=30, **overrides)
    return Transformer(cfg).eval()


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_every_head_of_every_layer_matches_the_forward_pass(norm):
    model = tiny(norm=norm)
    src = torch.tensor([[5, 6, 7, 8, 2, 0, 0]])  # two padding positions
    with torch.no_grad():
        _, maps = model.encode(src, return_attention=True)
    for layer in range(2):
        for head in range(4):
            walk = explain_head(model, src, layer, head)
            assert walk.max_abs_diff < 1e-5, walk.differences()
            assert torch.allclose(walk.weights, maps[layer][0, head], atol=1e-6)  # the model's own map
            assert torch.allclose(walk.weights.sum(-1), torch.ones(7), atol=1e-6)  # softmax rows
            assert torch.all(walk.weights[:, 5:] == 0) and not walk.mask[:, 5:].any()  # padding keys masked


def test_the_steps_are_eq_1_on_the_heads_slice_of_the_projections():
    model = tiny()
    src = torch.tensor([[9, 4, 12, 2]])
    walk = explain_head(model, src, layer=1, head=2, tokens=["a", "b", "c", "</s>"])
    mha = model.encoder.layers[1].self_attn
    rows = slice(2 * 16, 3 * 16)  # head 2 of 4, d_k = 64 / 4 = 16
    assert walk.w_q.shape == (64, 16) and walk.d_k == 16
    assert torch.allclose(walk.q, walk.x @ mha.q_proj.weight[rows].T + mha.q_proj.bias[rows], atol=1e-6)
    assert torch.allclose(walk.scores, walk.q @ walk.k.T, atol=1e-5)
    assert torch.allclose(walk.scaled, walk.scores / math.sqrt(16), atol=1e-6)
    assert torch.allclose(walk.weights, torch.softmax(walk.scaled, -1), atol=1e-6)
    assert torch.allclose(walk.head_output, walk.weights @ walk.v, atol=1e-6)
    assert torch.equal(walk.heads[:, rows], walk.head_output)  # this head's block of the concatenation
    # layer 1's input is layer 0's output (post-LN), not the embeddings
    with torch.no_grad():
        x0 = model.src_pos(model.src_embed(src))
        x1 = model.encoder.layers[0](x0, model.src_mask(src))[0][0]
    assert torch.allclose(walk.x, x1, atol=1e-6)
    assert walk.embeddings is not None and torch.allclose(walk.embeddings + walk.positions, x0[0], atol=1e-6)


def test_a_wrong_hand_computation_would_be_caught():
    model = tiny()
    walk = explain_head(model, torch.tensor([[5, 6, 7, 2]]), 0, 1)
    unscaled = torch.softmax(walk.scores, -1)  # forgetting the 1/√d_k
    assert (unscaled - walk.model_weights).abs().max() > 1e-3


def test_errors_name_the_problem():
    model = tiny()
    with pytest.raises(ValueError, match="layer 2 out of range: the encoder has 2 layers"):
        explain_head(model, torch.tensor([[5, 2]]), layer=2)
    with pytest.raises(ValueError, match="head 4 out of range"):
        explain_head(model, torch.tensor([[5, 2]]), head=4)
    with pytest.raises(ValueError, match="one sentence"):
        explain_head(model, torch.tensor([[5, 2], [6, 2]]))


def test_works_on_the_encoder_of_a_classifier():
    from qkv.models.classifier import ClassifierConfig, TextClassifier

    model = TextClassifier(ClassifierConfig.preset("tiny", vocab_size=40, n_layers=2)).eval()
    walk = explain_head(model, torch.tensor([[5, 6, 7]]), layer=1, head=1)
    assert walk.x.shape == (4, 32) and walk.tokens == ["[CLS]", "5", "6", "7"]  # [CLS] + 3 tokens
    assert walk.max_abs_diff < 1e-5


def test_scaling_table_shows_variance_d_k_and_saturation():
    rows = scaling_table(d_ks=(4, 64, 1024), n_keys=32, n_queries=128, seed=1)
    for r in rows:
        assert r.var_dot == pytest.approx(r.d_k, rel=0.15)  # Var(q·k) ≈ d_k
        assert r.var_scaled == pytest.approx(1.0, rel=0.15)  # ≈ 1 after / √d_k
        assert r.entropy_scaled > 2.8  # spread out (ln 32 = 3.47), whatever d_k
    unscaled = [r.entropy_unscaled for r in rows]
    assert unscaled[0] > unscaled[1] > unscaled[2]  # saturates as d_k grows
    assert rows[-1].entropy_unscaled < 0.3 and rows[-1].max_weight_unscaled > 0.9  # near one-hot


def test_format_matrix_aligns_and_cuts():
    text = format_matrix(torch.tensor([[0.5, 0.25], [1.0, 0.0]]), ["x", "yy"], ["a", "b"], decimals=2)
    assert text.splitlines() == ["       a    b", "x   0.50 0.25", "yy  1.00 0.00"]
    big = format_matrix(torch.zeros(20, 30), max_rows=5, max_cols=4)
    assert "…" in big.splitlines()[0] and big.splitlines()[-1] == "… (15 more rows)"


def test_word_level_demo_is_seeded():
    m1, src, tokens = word_level_demo("The cat saw the dog")
    m2, _, _ = word_level_demo("The cat saw the dog")
    assert tokens == ["the", "cat", "saw", "the", "dog", "</s>"]
    assert src[0, 0] == src[0, 3] and src[0, -1] == 2
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


def test_cli_explain_prints_the_walk_and_the_check(capsys):
    assert main(["explain", "the cat sat on the mat", "--layer", "2", "--head", "2"]) == 0
    out = capsys.readouterr().out
    for needle in (
        "W_Q of head 2: shape (16, 8)",
        "Q · Kᵀ / √d_k",
        "softmax",
        "Concat(head_1 … head_2)",
        "W_O",
        "OK: the hand computation is the model",
        "Var(q·k)",
        "1024",
    ):
        assert needle in out, needle
    assert "output of the previous layer" in out  # layer 2's X is layer 1's output
    assert main(["explain", "the cat", "--layer", "3"]) == 2
    assert "--layer must be 1 … 2" in capsys.readouterr().err
    assert main(["explain", "the cat", "--head", "3"]) == 2
    assert "--head must be 1 … 2" in capsys.readouterr().err
