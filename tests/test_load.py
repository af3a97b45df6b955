"""`qkv.load(path)`: the trained object of any model folder (Translator, SentenceClassifier, ImageClassifier), a str
is one input, the answers are the model's own; wrong kinds and mismatched tokenizers are one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import qkv
from qkv.decode import beam_search, beam_search_nbest
from qkv.tasks.image_classification.predictor import ImageClassifier
from qkv.tasks.predictions import Prediction
from qkv.tasks.text_classification.predictor import SentenceClassifier
from qkv.tasks.translation import Translator
from qkv_models import REVIEWS, SOURCES, classifier_folder, translation_folder, vit_folder

ROOT = Path(__file__).resolve().parents[1]
@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("load")
    return {"translation": translation_folder(root), "text": classifier_folder(root), "image": vit_folder(root)}


def test_load_is_top_level_lazy_and_typed():
    assert "load" in dir(qkv) and "load" in qkv.__all__ and callable(qkv.load)
    code = "import sys, qkv; print('qkv.tasks' in sys.modules, 'qkv.interop' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["False", "False"]  # `import qkv` stays light: load is imported on first use
    assert (ROOT / "src" / "qkv" / "py.typed").is_file()
    assert '"py.typed"' in (ROOT / "pyproject.toml").read_text()  # packaged with the wheel


def test_translator_a_str_is_one_sentence(folders):
    tr = qkv.load(folders["translation"])
    assert isinstance(tr, Translator)
    one = tr.translate("ein hund läuft", beam_size=2)
    assert isinstance(one, str)
    assert one == tr.translate(["ein hund läuft"], beam_size=2)[0]
    assert list(tr.translate_stream("ein hund läuft", beam_size=2)) == [one]  # not one line per character
    assert tr.translate(SOURCES, beam_size=1) == [tr.translate(s, beam_size=1) for s in SOURCES]


def test_translate_nbest_is_beam_searchs_list_best_first(folders):
    tr = qkv.load(folders["translation"])
    tr.max_len_b = 6
    options = tr.translate_nbest(SOURCES, nbest=3, beam_size=4)
    assert len(options) == len(SOURCES)
    for sentence, hyps in zip(SOURCES, options):
        assert 1 <= len(hyps) <= 3
        scores = [score for _, score in hyps]
        assert scores == sorted(scores, reverse=True)
        assert hyps[0][0] == tr.translate(sentence, beam_size=4)  # the first is beam search's answer
    with pytest.raises(ValueError, match="nbest"):
        tr.translate_nbest("ein hund", nbest=5, beam_size=4)


def test_beam_search_nbest_first_equals_beam_search():
    cfg = qkv.TransformerConfig.preset("tiny", src_vocab_size=30, tgt_vocab_size=30)
    model = qkv.Transformer(cfg).eval()
    src = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 2, 0, 0]])
    best = beam_search(model, src, beam_size=4, max_len_b=5)
    nbest = beam_search_nbest(model, src, nbest=4, beam_size=4, max_len_b=5)
    assert [hyps[0][0] for hyps in nbest] == best
    assert all(len(hyps) == 4 and len({tuple(ids) for ids, _ in hyps}) == 4 for hyps in nbest)  # 4 distinct


def test_sentence_classifier_predicts_the_models_probabilities(folders):
    clf = qkv.load(folders["text"])
    assert isinstance(clf, SentenceClassifier) and clf.labels == ["negative", "positive"]
    p = clf.predict("the film was great")
    assert isinstance(p, Prediction) and p.label in clf.labels
    ids = torch.tensor([clf.tokenizer.encode("the film was great")])
    with torch.no_grad():
        probs = clf.model(ids).softmax(-1)[0]
    assert p.probability == pytest.approx(probs.max().item(), abs=1e-6)
    assert p.probabilities == pytest.approx(dict(zip(clf.labels, probs.tolist())), abs=1e-6)
    many = clf.predict(REVIEWS)
    assert [q.label for q in many] == [clf.predict(r).label for r in REVIEWS]
    view = clf.attention("the film was great")
    assert view.tokens == ["[CLS]", *clf.tokenizer.tokens("the film was great")]
    with torch.no_grad():
        _, maps = clf.model(ids, return_attention=True)
    assert all(torch.equal(a, b) for a, b in zip(view.maps, maps))
    assert view.prediction.label == p.label and view.prediction.probability == pytest.approx(p.probability)


def test_image_classifier_reads_tensors_and_image_files(folders, tmp_path):
    from PIL import Image

    vit = qkv.load(folders["image"])
    assert isinstance(vit, ImageClassifier)
    gen = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (8, 8), generator=gen, dtype=torch.uint8)
    Image.fromarray(pixels.numpy(), mode="L").save(tmp_path / "digit.png")
    x = pixels.float()[None] / 255  # (1, 8, 8), as qkv vit train reads digits
    from_file, from_tensor = vit.predict(tmp_path / "digit.png"), vit.predict(x)
    assert from_file.probabilities == pytest.approx(from_tensor.probabilities, abs=1e-5)
    with torch.no_grad():
        expected = vit.model(x[None]).softmax(-1)[0]
    assert from_tensor.probability == pytest.approx(expected.max().item(), abs=1e-6)
    assert len(vit.predict(torch.stack([x, x]))) == 2 and len(vit.predict([x, x, x])) == 3
    view = vit.attention(x)
    assert view.tokens[:2] == ["cls", "p0"] and len(view.maps) == vit.model.config.n_layers
    with pytest.raises(ValueError, match=r"this model reads \(1, 8, 8\)"):
        vit.predict(torch.zeros(3, 8, 8))


def test_wrong_kind_is_named_in_one_line(folders):
    with pytest.raises(ValueError, match=r"is a text classifier, not a translation model: open it with qkv classify"):
        qkv.load(folders["text"], kind="translation")
    with pytest.raises(ValueError, match=r"is a translation model, not a text classifier"):
        SentenceClassifier.load(folders["translation"])
    with pytest.raises(ValueError, match=r"is an image classifier \(ViT\), not a translation model"):
        Translator.load(folders["image"])
    with pytest.raises(FileNotFoundError, match="not found"):
        qkv.load(folders["image"].parent / "nowhere" / "at" / "all")


@pytest.mark.parametrize("build, what", [(translation_folder, "src tokenizer"), (classifier_folder, "tokenizer")])
def test_a_tokenizer_larger_than_the_models_vocabulary_is_refused_at_load(tmp_path, build, what):
    folder = build(tmp_path, extra_vocab=3)
    with pytest.raises(ValueError, match=rf"{what} has \d+ ids but the model's vocabulary has \d+") as err:
        qkv.load(folder)
    assert str(folder) in str(err.value) and "\n" not in str(err.value)


def test_checkpoint_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        folder = vit_folder(tmp_path)
    finally:
        os.umask(umask)
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path.name  # safetensors alone writes 0600
    assert folder.stat().st_mode & 0o777 == 0o755


def test_fit_keep_best_ends_with_the_best_epochs_weights():
    from qkv.train.fit import ClassifyTrainConfig, best_epoch, classification_step, fit

    model = torch.nn.Linear(4, 2)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    scripted = iter([0.5, 0.9, 0.6])  # epoch 2 is the best; the model keeps training after it
    snapshots = []
    history = fit(model, lambda epoch: [(x, y)], classification_step(0.0, torch.device("cpu")),
                  ClassifyTrainConfig(epochs=3, lr=0.1, warmup=0.0), total_steps=3,
                  evaluate=lambda m: {"dev_acc": next(scripted)},
                  on_epoch=lambda r: snapshots.append(model.weight.detach().clone()), keep_best="dev_acc")  # fmt: skip
    assert best_epoch(history, "dev_acc") == 2
    assert torch.equal(model.weight, snapshots[1]) and not torch.equal(snapshots[1], snapshots[2])


def test_a_missing_local_folder_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(FileNotFoundError, match="checkpoint folder not found: runs/best"):
        qkv.load("runs/best")  # runs/ exists here: a typo'd run folder, not a hub model
