"""`qkv attention` / `qkv vit attention` draw the real maps of encoder-only models (classifier, ViT)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qkv.cli import main
from qkv.data.tokenizer import SubwordTokenizer, TokenizerFile
from qkv.models.classifier import ClassifierConfig, TextClassifier
from qkv.models.vit import ViT, ViTConfig
from qkv.train.checkpoint import save_checkpoint
from qkv.viz.maps import load_matrices


def test_attention_of_a_text_classifier_checkpoint(tmp_path, capsys):
    sentences = ["the film was great", "the film was dull", "a fine and lovely film"]
    tokenizer = SubwordTokenizer.train(sentences, 100, "word")
    model = TextClassifier(ClassifierConfig.preset("tiny", vocab_size=tokenizer.vocab_size)).eval()
    folder = save_checkpoint(tmp_path / "cls", model, tokenizers=TokenizerFile(tokenizer),
                             extra={"labels": ["negative", "positive"]})
    out = tmp_path / "att"
    assert main(["attention", "the film was great", "--model", str(folder), "--out", str(out), "--formats", "png"]) == 0
    printed = capsys.readouterr().out
    assert "prediction:" in printed and ("negative" in printed or "positive" in printed)
    (kind,) = load_matrices(out / "attention.npz")
    ids = torch.tensor([tokenizer.encode("the film was great")])
    with torch.no_grad():
        _, maps = model(ids, return_attention=True)
    assert kind.name == "encoder_self"
    assert kind.query_tokens == ["[CLS]", *tokenizer.tokens("the film was great")]
    np.testing.assert_allclose(kind.weights[0], maps[0][0].numpy(), atol=1e-6)  # (H, N, N): the real tensor
    assert (out / "encoder_self_layer1.png").is_file() and (out / "attention.html").is_file()


def test_vit_attention_writes_rollout_and_every_head_over_patches(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from qkv.data.mnist import load_digits_8x8

    model = ViT(ViTConfig.preset("digits")).eval()
    folder = save_checkpoint(tmp_path / "vit", model)
    out = tmp_path / "r.png"
    assert main(["vit", "attention", "--model", str(folder), "--index", "2", "--out", str(out)]) == 0
    assert out.is_file()
    (kind,) = load_matrices(tmp_path / "r" / "attention.npz")
    image = load_digits_8x8().test_x[2:3]
    with torch.no_grad():
        _, maps = model(image, return_attention=True)
    assert kind.query_tokens[:2] == ["cls", "p0"] and len(kind.query_tokens) == model.config.n_patches + 1
    for layer, m in enumerate(maps):
        np.testing.assert_allclose(kind.weights[layer], m[0].numpy(), atol=1e-6)


def test_attention_refuses_a_vit_checkpoint_with_a_pointer(tmp_path, capsys):
    folder = save_checkpoint(tmp_path / "vit", ViT(ViTConfig.preset("digits")))
    assert main(["attention", "a sentence", "--model", str(folder)]) == 2
    assert "qkv vit attention" in capsys.readouterr().err
