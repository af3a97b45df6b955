"""The commands on qkv checkpoints of each kind: a wrong kind or a mismatched tokenizer is one line (exit 2),
`translate --nbest / --max-len-b`, `classify predict` from stdin, and `classify/vit train` keeping the best epoch."""

from __future__ import annotations

import io
import json

import pytest
import torch

import qkv
from qkv.cli import main
from qkv.train.checkpoint import read_config
from qkv_models import REVIEWS, SOURCES, TARGETS, classifier_folder, translation_folder, vit_folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-models")
    corpus = root / "corpus"
    corpus.mkdir()
    for split in ("train", "val", "test"):
        (corpus / f"{split}.de").write_text("\n".join(SOURCES) + "\n", encoding="utf-8")
        (corpus / f"{split}.en").write_text("\n".join(TARGETS) + "\n", encoding="utf-8")
    return {"translation": translation_folder(root), "text": classifier_folder(root), "image": vit_folder(root),
            "corpus": corpus}  # fmt: skip


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # one line, no traceback
    return err


@pytest.mark.parametrize("argv", [
    ["translate", "--model", "{text}", "ein hund"],
    ["evaluate", "--model", "{text}", "--data", "{corpus}", "--src", "de", "--tgt", "en"],
    ["serve", "--model", "{text}", "--port", "0"],
    ["translate", "--model", "{image}", "ein hund"],
    ["classify", "predict", "--model", "{translation}", "a fine film"],
    ["classify", "predict", "--model", "{image}", "a fine film"],
    ["vit", "attention", "--model", "{text}"],
    ["explain", "--model", "{image}", "ein hund"],
    ["attention", "--model", "{image}", "ein hund"],
])  # fmt: skip
def test_a_model_of_the_wrong_kind_is_named_in_one_line(folders, capsys, argv):
    argv = [a.format(**folders) for a in argv]
    assert main(argv) == 2
    err = one_error_line(capsys)
    model = argv[argv.index("--model") + 1]
    assert model in err
    assert any(what in err for what in ("is a text classifier", "is a translation model", "is an image classifier",
                                        "is a ViT"))  # fmt: skip


def test_explain_and_attention_open_a_text_classifier(folders, capsys, tmp_path):
    assert main(["explain", "--model", str(folders["text"]), "the film was great", "--layer", "1", "--head", "2"]) == 0
    out = capsys.readouterr().out
    assert "OK: the hand computation is the model" in out and "[CLS]" in out
    assert main(["attention", "--model", str(folders["text"]), "the film was great", "--out", str(tmp_path / "a"),
                 "--formats", "png"]) == 0  # fmt: skip
    assert "prediction:" in capsys.readouterr().out


def test_a_tokenizer_larger_than_the_model_is_refused(tmp_path, capsys):
    folder = translation_folder(tmp_path, extra_vocab=2)
    assert main(["translate", "--model", str(folder), "ein hund"]) == 2
    assert "but the model's vocabulary has" in one_error_line(capsys)
    folder = classifier_folder(tmp_path, extra_vocab=2)
    assert main(["classify", "predict", "--model", str(folder), "a film"]) == 2
    assert "but the model's vocabulary has" in one_error_line(capsys)


def test_translate_nbest_prints_index_score_translation(folders, capsys):
    model = str(folders["translation"])
    assert main(["translate", "--model", model, "--beam", "3", "--max-len-b", "5", *SOURCES[:2]]) == 0
    best = capsys.readouterr().out.splitlines()
    assert main(["translate", "--model", model, "--beam", "3", "--max-len-b", "5", "--nbest", "2", *SOURCES[:2]]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [int(r[0]) for r in rows] == [0, 0, 1, 1]
    assert [rows[0][2], rows[2][2]] == best  # each sentence's first is the beam's answer
    assert float(rows[0][1]) >= float(rows[1][1]) and float(rows[2][1]) >= float(rows[3][1])
    assert main(["translate", "--model", model, "--beam", "3", "--nbest", "4", "ein hund"]) == 2
    assert "--nbest must be 1 … --beam (3)" in one_error_line(capsys)


def test_translate_max_len_b_bounds_the_output(folders, capsys):
    model = str(folders["translation"])
    assert main(["translate", "--model", model, "--beam", "1", "--max-len-b", "1", *SOURCES]) == 0
    lines = capsys.readouterr().out.splitlines()
    tr = qkv.load(model)
    tr.max_len_b = 1
    assert lines == tr.translate(SOURCES, beam_size=1)
    for source, line in zip(SOURCES, lines):
        assert len(tr.tgt_tokenizer.encode(line)) <= len(tr.src_tokenizer.encode(source)) + 1  # + </s> - 1 + 1
    assert main(["translate", "--model", model, "--max-len-b", "-1", "ein hund"]) == 2
    assert "argument --max-len-b: expected an integer >= 0, got '-1'" in one_error_line(capsys)


def test_classify_predict_reads_stdin(folders, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{REVIEWS[0]}\n\n{REVIEWS[1]}\n"))
    assert main(["classify", "predict", "--model", str(folders["text"])]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    clf = qkv.load(folders["text"])
    expected = clf.predict(REVIEWS[:2])
    assert [r[2] for r in rows] == REVIEWS[:2]
    assert [r[0] for r in rows] == [p.label for p in expected]
    assert [float(r[1]) for r in rows] == pytest.approx([p.probability for p in expected], abs=1e-3)


def test_classify_train_keeps_the_best_epoch(tmp_path, capsys):
    rows = [(1, "a great film"), (0, "an awful mess"), (1, "lovely and fine"), (0, "dull and awful")] * 6
    (tmp_path / "train.tsv").write_text("label\tsentence\n" + "".join(f"{y}\t{s}\n" for y, s in rows))
    dev = [(1, "a lovely film"), (0, "a dull mess"), (1, "great"), (0, "awful film"), (1, "dull but great")]
    (tmp_path / "dev.tsv").write_text("label\tsentence\n" + "".join(f"{y}\t{s}\n" for y, s in dev))
    out = tmp_path / "run"
    assert main(["classify", "train", "--data", str(tmp_path), "--out", str(out), "--preset", "tiny", "--epochs", "5",
                 "--lr", "1e-2", "--batch-size", "4", "--vocab-size", "60"]) == 0  # fmt: skip
    config = read_config(out)
    accs = [r["dev_acc"] for r in config["history"]]
    assert config["best_epoch"] == accs.index(max(accs)) + 1
    assert config["metrics"]["dev_acc"] == max(accs)
    clf = qkv.load(out)  # the saved weights are that epoch's: they score its dev accuracy again
    answers = clf.predict([s for _, s in dev])
    right = [p.label == ("positive" if y else "negative") for (y, _), p in zip(dev, answers)]
    assert sum(right) / len(dev) == pytest.approx(max(accs))


def test_vit_train_keeps_the_best_epoch(tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "vit"
    assert main(["vit", "train", "--out", str(out), "--epochs", "3", "--preset", "digits", "--lr", "3e-2"]) == 0
    config = json.loads((out / "config.json").read_text())
    accs = [r["dev_acc"] for r in config["history"]]
    assert config["best_epoch"] == accs.index(max(accs)) + 1
    assert config["metrics"]["test_acc"] == pytest.approx(max(accs))  # the test set is the dev set here
    assert torch.is_tensor(qkv.load(out).probabilities(torch.zeros(1, 8, 8)))
