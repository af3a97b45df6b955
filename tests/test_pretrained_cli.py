"""Hugging Face folders (Marian, BERT, ViT: built here with random weights, never downloaded) through qkv.load and
every command: translate / evaluate / attention / explain / serve, classify predict, vit attention --image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

import qkv
from hf_models import bert_folder, eager, marian_folder, vit_folder
from qkv.cli import main
from qkv.tasks.image_classification.predictor import ImageClassifier
from qkv.tasks.text_classification.predictor import SentenceClassifier
from qkv.tasks.translation import Translator
from qkv.viz.maps import load_matrices

pytestmark = pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")

TEXTS = ["ein kleines mädchen spielt im park", "zwei hunde", "der mann liest ein buch"]


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {"marian": marian_folder(root / "m", max_position_embeddings=128), "bert": bert_folder(root / "b"),
            "bert-model": bert_folder(root / "b", head=False), "vit": vit_folder(root / "v")}  # fmt: skip


def test_load_gives_the_object_of_each_kind(hf):
    assert isinstance(qkv.load(hf["marian"]), Translator)
    clf = qkv.load(hf["bert"])
    assert isinstance(clf, SentenceClassifier) and clf.labels == ["negative", "neutral", "positive"]
    assert isinstance(qkv.load(hf["vit"]), ImageClassifier)
    encoder = qkv.load(hf["bert-model"])
    assert encoder.kind == "text-encoder" and encoder.attention("zwei hunde").prediction is None
    with pytest.raises(ValueError, match="no trained classification head"):
        encoder.predict("zwei hunde")


def test_translate_a_marian_folder_equals_generate(hf, capsys):
    import transformers

    folder = hf["marian"]
    assert main(["translate", "--model", str(folder), "--beam", "1", "--max-len-b", "5", "--device", "cpu",
                 *TEXTS]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    tokenizer = transformers.MarianTokenizer.from_pretrained(folder)
    model = eager("MarianMTModel", folder)
    for text, line in zip(TEXTS, lines, strict=True):
        enc = tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**enc, num_beams=1, do_sample=False, max_new_tokens=enc.input_ids.shape[1] + 5,
                                 bad_words_ids=[[model.config.pad_token_id]])  # fmt: skip
        assert line == tokenizer.decode(out[0], skip_special_tokens=True)
    assert main(["translate", "--model", str(folder), "--beam", "3", "--nbest", "3", "--max-len-b", "4", TEXTS[1]]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_evaluate_attention_explain_serve_on_a_marian_folder(hf, capsys, tmp_path):
    folder = str(hf["marian"])
    (tmp_path / "src.txt").write_text("\n".join(TEXTS) + "\n")
    assert main(["translate", "--model", folder, "--beam", "2", "--max-len-b", "50", "--file",
                 str(tmp_path / "src.txt")]) == 0  # fmt: skip
    hyps = capsys.readouterr().out.splitlines()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split in ("train", "val", "test"):
        (corpus / f"{split}.de").write_text("\n".join(TEXTS) + "\n")
        (corpus / f"{split}.en").write_text("\n".join(TEXTS) + "\n")
    assert main(["evaluate", "--model", folder, "--data", str(corpus), "--src", "de", "--tgt", "en", "--beam", "2",
                 "--json", "--device", "cpu", "--output", str(tmp_path / "hyp.txt")]) == 0  # fmt: skip
    assert "bleu" in json.loads(capsys.readouterr().out)
    assert (tmp_path / "hyp.txt").read_text().splitlines() == hyps  # the same translations as `translate`

    out = tmp_path / "maps"
    assert main(["attention", "--model", folder, TEXTS[1], "--out", str(out), "--formats", "png",
                 "--beam-size", "1"]) == 0  # fmt: skip
    names = {k.name for k in load_matrices(out / "attention.npz")}
    assert names == {"encoder_self", "decoder_self", "cross"}
    capsys.readouterr()
    assert main(["explain", "--model", folder, TEXTS[0], "--layer", "2", "--head", "2"]) == 0
    assert "OK: the hand computation is the model" in capsys.readouterr().out

    from qkv.cli._models import load_translator
    from qkv.viz.serve import AttentionApp

    translator, description, untrained = load_translator(folder)
    body = json.dumps({"sentence": TEXTS[1], "beam_size": 1}).encode()
    answer = AttentionApp(translator, description).translate(body)
    assert not untrained and answer["translation"] == translator.translate(TEXTS[1], beam_size=1)


def test_classify_predict_a_bert_folder_gives_transformers_probabilities(hf, capsys, monkeypatch):
    import io

    import transformers

    folder = hf["bert"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(TEXTS) + "\n"))
    assert main(["classify", "predict", "--model", str(folder)]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = eager("BertForSequenceClassification", folder)
    for text, (label, prob, sentence) in zip(TEXTS, rows, strict=True):
        with torch.no_grad():
            probs = model(**tokenizer(text, return_tensors="pt")).logits.softmax(-1)[0]
        assert sentence == text
        assert label == model.config.id2label[int(probs.argmax())]
        assert float(prob) == pytest.approx(probs.max().item(), abs=1e-3)
    assert main(["classify", "predict", "--model", str(hf["bert-model"]), "zwei hunde"]) == 2
    assert "text encoder without a trained head" in capsys.readouterr().err


def test_attention_and_explain_on_a_bert_folder(hf, capsys, tmp_path):
    import transformers

    folder = hf["bert"]
    out = tmp_path / "maps"
    assert main(["attention", "--model", str(folder), TEXTS[0], "--out", str(out), "--formats", "png"]) == 0
    (kind,) = load_matrices(out / "attention.npz")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        ref = eager("BertForSequenceClassification", folder)(**tokenizer(TEXTS[0], return_tensors="pt"),
                                                             output_attentions=True).attentions  # fmt: skip
    assert kind.query_tokens == tokenizer.convert_ids_to_tokens(tokenizer(TEXTS[0]).input_ids)  # [CLS] … [SEP]
    for layer, m in enumerate(ref):
        np.testing.assert_allclose(kind.weights[layer], m[0].numpy(), atol=1e-5)
    capsys.readouterr()
    for model in (hf["bert"], hf["bert-model"]):
        assert main(["explain", "--model", str(model), TEXTS[1], "--layer", "2", "--head", "1"]) == 0
        assert "OK: the hand computation is the model" in capsys.readouterr().out


def test_vit_attention_on_an_image_file_with_the_models_preprocessing(hf, capsys, tmp_path):
    import transformers
    from PIL import Image

    folder = hf["vit"]
    gen = np.random.default_rng(0)
    picture = Image.fromarray(gen.integers(0, 256, (16, 16, 3), dtype=np.uint8), mode="RGB")  # resized to 8×8
    picture.save(tmp_path / "cat.png")
    out = tmp_path / "rollout.png"
    assert main(["vit", "attention", "--model", str(folder), "--image", str(tmp_path / "cat.png"),
                 "--out", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    processor = transformers.ViTImageProcessor.from_pretrained(folder)
    pixels = processor(Image.open(tmp_path / "cat.png"), return_tensors="pt").pixel_values  # (1, 3, 8, 8)
    with torch.no_grad():
        ref = eager("ViTForImageClassification", folder)(pixels, output_attentions=True)
    label = {0: "cat", 1: "dog", 2: "bird"}[ref.logits.argmax(-1).item()]
    assert f"predicted {label}" in printed
    for layer, kind_maps in enumerate(load_matrices(tmp_path / "rollout" / "attention.npz")[0].weights):
        np.testing.assert_allclose(kind_maps, ref.attentions[layer][0].numpy(), atol=1e-4)
    assert main(["vit", "attention", "--model", str(folder)]) == 2
    assert "--image" in capsys.readouterr().err
