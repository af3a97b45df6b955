"""TextClassifier (BERT-style encoder classifier), SST-2 reading, the classification loop and the CLI."""

from __future__ import annotations

import pytest
import torch

from qkv.cli import main
from qkv.config import ConfigError
from qkv.data.batching import collate_tokens
from qkv.data.sst2 import SST2FormatError, read_sst2
from qkv.data.tokenizer import SubwordTokenizer, TokenizerFile
from qkv.models import registry
from qkv.models.classifier import ClassifierConfig, TextClassifier
from qkv.tasks.text_classification import accuracy, predict_logits, train_text_classifier, word_dropout
from qkv.train.checkpoint import load_checkpoint, read_config, save_checkpoint
from qkv.train.fit import ClassifyTrainConfig


def tiny(pooling="cls", **kw):
    return TextClassifier(ClassifierConfig.preset("tiny", vocab_size=40, pooling=pooling, **kw)).eval()


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_shapes_and_attention(pooling):
    model = tiny(pooling, n_layers=2)
    tokens = torch.randint(4, 40, (3, 7))
    logits, maps = model(tokens, return_attention=True)
    n = 8 if pooling == "cls" else 7  # [CLS] adds one position
    assert logits.shape == (3, 2)
    assert len(maps) == 2 and maps[0].shape == (3, 2, n, n)
    assert torch.allclose(maps[0].sum(-1), torch.ones(3, 2, n), atol=1e-5)


def test_cls_vs_mean_pooling():
    model = tiny("mean")
    tokens = torch.tensor([[5, 6, 7, 0, 0]])
    h, mask, _ = model.encode(tokens)
    assert torch.allclose(model.pool(h, mask), h[0, :3].mean(0, keepdim=True), atol=1e-6)  # pads excluded
    cls_model = tiny("cls")
    h, mask, _ = cls_model.encode(tokens)
    assert h.shape[1] == 6 and mask[0, 0, 0].tolist() == [True, True, True, True, False, False]
    assert torch.equal(cls_model.pool(h, mask), h[:, 0])
    assert cls_model.cls is not None and model.cls is None


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_padding_does_not_change_prediction(pooling):
    model = tiny(pooling, n_layers=2, dropout=0.1).eval()
    alone = torch.tensor([[5, 9, 12]])
    batch = collate_tokens([[5, 9, 12], [7, 8, 9, 10, 11, 12, 13]])  # first row padded with 4 PADs
    assert batch[0].tolist() == [5, 9, 12, 0, 0, 0, 0]
    with torch.no_grad():
        assert torch.allclose(model(alone)[0], model(batch)[0], atol=1e-5)


def contains_five(n: int = 400) -> tuple[list[list[int]], list[int]]:
    """Class 1 iff the sentence contains token 5; lengths vary, so padding is exercised."""
    g = torch.Generator().manual_seed(0)
    seqs, labels = [], []
    for i in range(n):
        length = int(torch.randint(3, 9, (1,), generator=g))
        s = torch.randint(6, 40, (length,), generator=g).tolist()
        if i % 2:
            s[int(torch.randint(0, length, (1,), generator=g))] = 5
        seqs.append(s)
        labels.append(i % 2)
    return seqs, labels


def test_tiny_classifier_learns_separable_task():
    seqs, labels = contains_five()
    model = TextClassifier(ClassifierConfig.preset("tiny", vocab_size=40))
    history = train_text_classifier(
        model,
        seqs[:300],
        labels[:300],
        ClassifyTrainConfig(epochs=8, batch_size=32, lr=3e-3),
        dev=(seqs[300:], labels[300:]),
    )
    assert history[-1]["dev_acc"] >= 0.95
    assert history[-1]["loss"] < history[0]["loss"]


def test_word_dropout_hides_words_never_padding():
    tokens = collate_tokens([[7] * 50, [8] * 20])  # (2, 50): the second row padded with 30 PADs
    out = word_dropout(tokens, 0.3, unk_id=3, pad_id=0, generator=torch.Generator().manual_seed(0))
    assert (out[1, 20:] == 0).all()  # padding stays padding
    replaced = (out == 3) & (tokens != 0)
    assert ((out == tokens) | replaced).all()  # a token is kept or becomes [UNK], nothing else
    assert 0.15 < replaced.sum().item() / 70 < 0.45  # about p of the 70 words
    with pytest.raises(ConfigError, match="word_dropout"):
        ClassifyTrainConfig(word_dropout=1.0)


def test_config_validates():
    with pytest.raises(ConfigError, match="pooling"):
        ClassifierConfig(vocab_size=10, pooling="max")
    with pytest.raises(ConfigError, match="divisible"):
        ClassifierConfig(vocab_size=10, d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match="unknown"):
        ClassifierConfig.from_dict({"vocab_size": 10, "widht": 3})
    with pytest.raises(ValueError, match="max_len"):
        tiny()(torch.ones(1, 65, dtype=torch.long))


def test_checkpoint_roundtrip_with_tokenizer(tmp_path):
    model = tiny("mean")
    tokenizer = SubwordTokenizer.train(["a fine film", "a dull film"] * 5, 30, "word")
    train = ClassifyTrainConfig(epochs=2)
    folder = save_checkpoint(
        tmp_path / "m",
        model,
        train_config=train.to_dict(),
        metrics={"dev_acc": 0.5},
        tokenizers=TokenizerFile(tokenizer),
        extra={"labels": ["a", "b"]},
    )
    assert (folder / "tokenizer.json").is_file()
    config = read_config(folder)
    assert config["arch"] == "classifier" and ClassifyTrainConfig.from_dict(config["train"]) == train
    loaded = load_checkpoint(folder)  # no model given: rebuilt through qkv.models.registry
    tokens = torch.randint(4, 40, (2, 5))
    assert isinstance(loaded.model, TextClassifier) and loaded.model.config == model.config
    assert loaded.config["labels"] == ["a", "b"] and loaded.metrics == {"dev_acc": 0.5}
    assert torch.equal(loaded.model(tokens), model(tokens))
    assert TokenizerFile.load(folder).encode("a fine film") == tokenizer.encode("a fine film")


def test_registry_knows_classifier():
    model = tiny("cls")
    assert registry.model_arch(model) == "classifier" and "classifier" in registry.ARCHS
    rebuilt = registry.build_model("classifier", model.config.to_dict())
    assert isinstance(rebuilt, TextClassifier) and rebuilt.config == model.config
    assert model.config.replace(n_classes=3).n_classes == 3


def test_predict_logits_keeps_input_order():
    model = tiny()
    seqs = [[5] * 7, [6, 7], [8, 9, 10, 11]]
    batched = predict_logits(model, seqs)
    for i, s in enumerate(seqs):
        assert torch.allclose(batched[i], model(torch.tensor([s]))[0], atol=1e-5)
    assert accuracy(model, seqs, batched.argmax(-1).tolist()) == 1.0


def test_read_sst2_and_errors(tmp_path):
    good = tmp_path / "train.tsv"
    good.write_text("label\tsentence\n1\ta fine film\n0\tdull\n")
    data = read_sst2(good)
    assert data.sentences == ["a fine film", "dull"] and data.labels == [1, 0]
    bad = tmp_path / "bad.tsv"
    bad.write_text("label\tsentence\n1\tok\nnot a row\n")
    with pytest.raises(SST2FormatError, match=r"bad.tsv:3: expected 2 tab-separated fields"):
        read_sst2(bad)
    bad.write_text("label\tsentence\n1\tok\n7\tseven\n")
    with pytest.raises(SST2FormatError, match=r"bad.tsv:3: expected a label in 0..1, got '7'"):
        read_sst2(bad)
    bad.write_text("sentence only\n")
    with pytest.raises(SST2FormatError, match=r"bad.tsv:1: expected the header"):
        read_sst2(bad)


def test_cli_train_and_predict(tmp_path, capsys):
    rows = ["label\tsentence"]
    for i in range(60):
        rows.append(f"1\ta great and wonderful film {i}" if i % 2 else f"0\ta dull and awful mess {i}")
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "dev.tsv").write_text("label\tsentence\n1\twonderful film\n0\tawful mess\n")
    out = tmp_path / "model"
    code = main(
        [
            "classify",
            "train",
            "--data",
            str(tmp_path),
            "--out",
            str(out),
            "--preset",
            "tiny",
            "--epochs",
            "6",
            "--lr",
            "3e-3",
            "--batch-size",
            "8",
            "--vocab-size",
            "100",
            "--set",
            "d_ff=48",
            "--word-dropout",
            "0.1",
        ]
    )
    assert code == 0 and (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    config = read_config(out)
    assert config["model"]["d_ff"] == 48 and config["train"]["word_dropout"] == 0.1  # the options took effect
    capsys.readouterr()
    assert main(["classify", "predict", "--model", str(out), "a great film", "an awful mess"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["positive", "negative"]
    (tmp_path / "dev.tsv").write_text("label\tsentence\n1\tok\n2\tbad label\n")
    assert main(["classify", "train", "--data", str(tmp_path), "--out", str(out), "--preset", "tiny",
                 "--overwrite"]) == 2
    assert "dev.tsv:3" in capsys.readouterr().err


def test_real_sst2_files_parse(shared_data):
    dev = read_sst2(shared_data / "sst2" / "dev.tsv")
    assert len(dev) == 872 and set(dev.labels) == {0, 1}
