"""BERT and ViT built locally with random weights, opened as qkv's TextClassifier and ViT: the same logits and
attention maps as transformers, the tokenizer's text -> ids -> text as transformers', and the by-hand head check
of `qkv explain` passing for every layer and head."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from hf_models import SENTENCES, bert_folder, eager, vit_folder
from qkv.interop import load_pretrained
from qkv.models.vit import ViT
from qkv.viz.explain import explain_head

TEXTS = ["a small girl plays in the park", "two dogs", "der mann liest zzz"]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    folder = bert_folder(tmp_path_factory.mktemp("bert"))
    return folder, load_pretrained(folder)


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    folder = vit_folder(tmp_path_factory.mktemp("vit"))
    return folder, load_pretrained(folder)


def _close(ours, theirs, tol):
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() < tol


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-5), (torch.float32, 1e-4)])
def test_bert_logits_and_attention_equal_transformers(bert, dtype, tol):
    import transformers

    folder, imported = bert
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
    hf = eager("BertForSequenceClassification", folder, dtype)
    enc = hf_tok(TEXTS, padding=True, return_tensors="pt")
    ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(i) for i in imported.tokenizer.encode_batch(TEXTS)], True)
    assert ids.equal(enc.input_ids[:, 1:])  # the same tokens after [CLS], padded with [PAD] = 0
    model = imported.model.to(dtype)
    with torch.no_grad():
        ref = hf(**enc, output_attentions=True)
        logits, maps = model(ids, return_attention=True)
    imported.model.float()
    _close(logits, ref.logits, tol)
    assert len(maps) == len(ref.attentions) == 2
    for a, b in zip(maps, ref.attentions):
        _close(a, b, tol)


def test_bert_options_and_labels(bert):
    _, imported = bert
    c = imported.model.config
    assert imported.kind == "text-classifier" and imported.labels == ["negative", "neutral", "positive"]
    assert (c.activation, c.positional, c.scale_embeddings, c.embed_norm, c.pooler, c.eps) == (
        "gelu", "learned", False, True, True, 1e-12)
    assert c.n_segments == 2


@pytest.mark.parametrize("text", [*TEXTS, SENTENCES[1], "Two DOGS, running!"])
def test_wordpiece_adapter_matches_the_hf_tokenizer(bert, text):
    import transformers

    folder, imported = bert
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
    ids = imported.tokenizer.encode(text)
    assert ids == hf_tok(text).input_ids[1:]  # [SEP] appended; [CLS] is the model's
    assert imported.tokenizer.tokens(text) == hf_tok.convert_ids_to_tokens(ids)
    assert imported.tokenizer.decode(ids) == hf_tok.decode(ids, skip_special_tokens=True)


def test_bert_model_without_head_is_a_text_encoder(tmp_path):
    import transformers

    folder = bert_folder(tmp_path, head=False)
    imported = load_pretrained(folder)
    assert imported.kind == "text-encoder" and imported.labels is None
    hf = eager("BertModel", folder)
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
    enc = hf_tok(TEXTS[:1], return_tensors="pt")
    with torch.no_grad():
        h, _, maps = imported.model.encode(enc.input_ids[:, 1:], return_attention=True)
        ref = hf(**enc, output_attentions=True)
    _close(h, ref.last_hidden_state, 1e-4)
    for a, b in zip(maps, ref.attentions):
        _close(a, b, 1e-4)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-5), (torch.float32, 1e-4)])
def test_vit_logits_and_attention_equal_transformers(vit, dtype, tol):
    folder, imported = vit
    assert isinstance(imported.model, ViT) and imported.kind == "image-classifier"
    assert imported.labels == ["cat", "dog", "bird"] and imported.image["size"] == 8
    hf = eager("ViTForImageClassification", folder, dtype)
    images = torch.randn(2, 3, 8, 8, dtype=dtype)
    model = imported.model.to(dtype)
    with torch.no_grad():
        ref = hf(pixel_values=images, output_attentions=True)
        logits, maps = model(images, return_attention=True)
    imported.model.float()
    _close(logits, ref.logits, tol)
    assert len(maps) == len(ref.attentions) == 2
    for a, b in zip(maps, ref.attentions):
        _close(a, b, tol)


def test_explain_passes_on_every_layer_and_head_of_bert_and_vit(bert, vit):
    _, b = bert
    ids = torch.tensor([b.tokenizer.encode(TEXTS[0])])
    tokens = ["[CLS]", *b.tokenizer.tokens(TEXTS[0])]
    _, v = vit
    image = torch.randn(1, 3, 8, 8)
    for model, x, labels in ((b.model, ids, tokens), (v.model, image, None)):
        for layer in range(2):
            for head in range(2):
                walk = explain_head(model, x, layer, head, labels)
                assert walk.max_abs_diff < 1e-4, (type(model).__name__, layer, head, walk.differences())
    assert walk.tokens[:2] == ["[CLS]", "p0"]


def test_vit_checkpoints_with_transformers_4_names_load_the_same(vit, tmp_path):
    """Hub checkpoints such as google/vit-base-patch16-224 were written by transformers 4 (other layer names)."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder, imported = vit
    old = shutil.copytree(folder, tmp_path / "vit4")
    renames = {".attention.q_proj.": ".attention.attention.query.", ".attention.k_proj.": ".attention.attention.key.",
               ".attention.v_proj.": ".attention.attention.value.", ".attention.o_proj.": ".attention.output.dense.",
               ".mlp.fc1.": ".intermediate.dense.", ".mlp.fc2.": ".output.dense.", "vit.layers.": "vit.encoder.layer."}
    renamed = {}
    for name, tensor in load_file(str(old / "model.safetensors")).items():
        for new, legacy in renames.items():
            name = name.replace(new, legacy)
        renamed[name] = tensor
    assert any("attention.attention.query" in n for n in renamed)
    save_file(renamed, str(old / "model.safetensors"))
    images = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert load_pretrained(old).model(images).equal(imported.model(images))
