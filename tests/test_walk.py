"""qkv.viz.walk: every cell's arithmetic, from the model's forward pass, equals `qkv explain`'s; the lessons."""

from __future__ import annotations

import math

import pytest
import torch

from qkv import Transformer, TransformerConfig
from qkv.viz.explain import explain_head, scaling_table
from qkv.viz.lessons import positions_data, scaling_data
from qkv.viz.walk import attention_modules, capture_attention, layer_walk, model_walk


def tiny(**overrides):
    torch.manual_seed(0)
    cfg = TransformerConfig.preset("tiny", src_vocab_size=30, tgt_vocab_size=30, **overrides)
    return Transformer(cfg).eval()


def f64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


SRC = torch.tensor([[5, 6, 7, 8, 2]])
TGT = torch.tensor([[1, 9, 10, 11]])


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_encoder_cells_equal_qkv_explain(norm):
    model = tiny(norm=norm)
    walk = model_walk(model, lambda: model(SRC, TGT, return_attention=True), n_show=16)
    assert walk["max_abs_diff"] < 1e-5 and not walk["omitted"]
    for layer in range(2):
        for head in range(4):
            ex = explain_head(model, SRC, layer, head)
            entry = walk["kinds"]["encoder_self"]["layers"][layer]
            h = entry["heads"][head]
            for name in ("q", "k", "v", "head_output"):
                assert torch.allclose(f64(h[name]), getattr(ex, name).double(), atol=1e-5), name
                assert torch.allclose(f64(h[name + "_norm"]), getattr(ex, name).double().norm(dim=-1),
                                      atol=1e-5)
            assert torch.allclose(f64(h["scores"]), ex.scores.double(), atol=1e-5)
            assert torch.allclose(f64(entry["output"]), ex.output[:, :16].double(), atol=1e-5)
            assert torch.equal(torch.tensor(entry["mask"]).bool(), ex.mask)


def test_decoder_self_is_causal_and_cross_reads_the_encoder_output():
    model = tiny()
    modules = attention_modules(model)
    assert set(modules) == {"encoder_self", "decoder_self", "cross"}
    (_, maps), calls = capture_attention(modules, lambda: model(SRC, TGT, return_attention=True))
    dec = calls["decoder_self"][1]
    assert torch.equal(dec.mask, torch.tril(torch.ones(4, 4, dtype=torch.bool)))
    memory = model.encode(SRC).detach()[0]
    cross = calls["cross"][0]
    assert torch.allclose(cross.key, memory, atol=1e-6) and cross.mask.shape == (4, 5)
    entry = layer_walk(cross, modules["cross"][0])
    assert max(entry["check"].values()) < 1e-5
    # the hand weights of a masked cell are exactly 0 and the row sums to 1
    entry = layer_walk(dec, modules["decoder_self"][1])
    scores = f64(entry["heads"][2]["scores"]) / math.sqrt(16)
    weights = torch.softmax(scores.masked_fill(~dec.mask, float("-inf")), -1)
    assert torch.allclose(weights, maps.decoder_self[1][0, 2].double(), atol=1e-5)


def test_the_check_catches_a_wrong_model_output():
    model = tiny()
    modules = attention_modules(model)
    _, calls = capture_attention(modules, lambda: model(SRC, TGT, return_attention=True))
    call = calls["encoder_self"][0]
    call.output = call.output + 1e-2
    assert layer_walk(call, modules["encoder_self"][0])["check"]["MultiHead(X)"] == pytest.approx(1e-2, rel=1e-3)


def test_layers_past_the_size_limit_are_left_out_and_listed():
    model = tiny()
    full = model_walk(model, lambda: model(SRC, TGT, return_attention=True))
    small = model_walk(model, lambda: model(SRC, TGT, return_attention=True), limit_bytes=full["bytes"] // 2)
    kept = [(k, i) for k, v in small["kinds"].items() for i, e in enumerate(v["layers"]) if e is not None]
    assert small["omitted"] and len(kept) + len(small["omitted"]) == 6
    assert ("encoder_self", 0) in kept and small["bytes"] <= full["bytes"] // 2  # layer 1 of a kind goes first


def test_a_classifier_and_a_vit_have_their_encoder_walked():
    from qkv.models.classifier import ClassifierConfig, TextClassifier
    from qkv.models.vit import ViT, ViTConfig

    clf = TextClassifier(ClassifierConfig.preset("tiny", vocab_size=40, n_layers=2)).eval()
    ids = torch.tensor([[5, 6, 7]])
    walk = model_walk(clf, lambda: clf(ids, return_attention=True))
    assert set(walk["kinds"]) == {"encoder_self"} and walk["max_abs_diff"] < 1e-5
    ex = explain_head(clf, ids, 1, 1)
    got = f64(walk["kinds"]["encoder_self"]["layers"][1]["heads"][1]["scores"])
    assert got.shape == (4, 4) and torch.allclose(got, ex.scores.double(), atol=1e-5)  # [CLS] + 3 tokens

    vit = ViT(ViTConfig.preset("digits")).eval()
    image = torch.rand(1, 1, vit.config.image_size, vit.config.image_size)
    walk = model_walk(vit, lambda: vit(image, return_attention=True))
    n = vit.config.n_patches + 1
    assert len(walk["kinds"]["encoder_self"]["layers"][0]["mask"]) == n and walk["max_abs_diff"] < 1e-5


def test_lessons_are_the_numbers_of_qkv_explain_and_qkv_positions():
    data = scaling_data()
    rows = scaling_table((1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), n_keys=32)
    assert [r["d_k"] for r in data["rows"]] == [r.d_k for r in rows]
    assert data["rows"][6]["entropy_unscaled"] == rows[6].entropy_unscaled  # the same computation, same draws
    pos = positions_data(d_model=8, n_positions=5)
    assert pos["table"][0] == [0.0, 1.0] * 4 and pos["similarity"][2][2] == pytest.approx(4.0, abs=1e-3)
    with pytest.raises(ValueError, match="even"):
        positions_data(d_model=7)
