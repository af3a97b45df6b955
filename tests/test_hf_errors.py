"""Hugging Face folders qkv cannot open faithfully are refused with one line naming the folder and the field."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from hf_models import bert_folder, marian_folder
from qkv.interop import HFImportError, MissingExtraError, load_pretrained

pytestmark = pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("made")
    return {"marian": marian_folder(root / "m"), "bert": bert_folder(root / "b")}


@pytest.fixture
def copy(made, tmp_path):
    def _copy(kind: str) -> Path:
        return Path(shutil.copytree(made[kind], tmp_path / kind))

    return _copy


def _edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def _refused(folder, *words: str) -> str:
    with pytest.raises(HFImportError) as info:
        load_pretrained(folder)
    message = str(info.value)
    assert "\n" not in message and str(folder) in message
    for word in words:
        assert word in message
    return message


def test_unsupported_architecture(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    _refused(tmp_path, "architectures", "GPT2LMHeadModel", "MarianMTModel")


def test_a_qkv_checkpoint_folder_is_pointed_to_qkv_load(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"arch": "transformer", "model": {}}))
    _refused(tmp_path, "qkv checkpoint")


@pytest.mark.parametrize("missing", ["source.spm", "vocab.json"])
def test_marian_without_its_tokenizer(copy, missing):
    folder = copy("marian")
    (folder / missing).unlink()
    _refused(folder, missing)


def test_bert_without_a_tokenizer(copy):
    folder = copy("bert")
    (folder / "tokenizer.json").unlink()
    (folder / "vocab.txt").unlink(missing_ok=True)
    _refused(folder, "tokenizer.json", "vocab.txt")


def test_missing_weights(copy):
    folder = copy("bert")
    (folder / "model.safetensors").unlink()
    _refused(folder, "weights", "model.safetensors")


@pytest.mark.parametrize(
    "kind, changes, field",
    [
        ("marian", {"normalize_before": True}, "normalize_before"),
        ("marian", {"add_final_layer_norm": True}, "add_final_layer_norm"),
        ("marian", {"activation_function": "gelu_new"}, "activation_function"),
        ("marian", {"decoder_ffn_dim": 64}, "decoder_ffn_dim"),
        ("marian", {"share_encoder_decoder_embeddings": False}, "share_encoder_decoder_embeddings"),
        ("bert", {"position_embedding_type": "relative_key"}, "position_embedding_type"),
        ("bert", {"hidden_act": "gelu_new"}, "hidden_act"),
        ("bert", {"problem_type": "multi_label_classification"}, "problem_type"),
        ("bert", {"is_decoder": True}, "is_decoder"),
    ],
)
def test_config_fields_qkv_cannot_honour(copy, kind, changes, field):
    folder = copy(kind)
    _edit_config(folder, **changes)
    _refused(folder, field)


def test_mismatched_shapes_and_extra_weights(copy):
    from safetensors.torch import load_file, save_file

    folder = copy("bert")
    tensors = load_file(str(folder / "model.safetensors"))
    name = "bert.encoder.layer.0.intermediate.dense.weight"
    save_file({**tensors, name: tensors[name][:-1].contiguous()}, str(folder / "model.safetensors"))
    _refused(folder, "ffn.linear1.weight", "shape")
    save_file({**tensors, "bert.extra.weight": tensors[name].clone()}, str(folder / "model.safetensors"))
    _refused(folder, "bert.extra.weight")


def test_vocab_json_that_does_not_match_the_config(copy):
    folder = copy("marian")
    vocab = json.loads((folder / "vocab.json").read_text())
    vocab.pop(next(k for k in vocab if k not in ("<unk>", "</s>", "<pad>")))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    _refused(folder, "vocab.json")


def test_no_folder_and_no_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HFImportError, match="hub"):
        load_pretrained("qkv-test-no-such-org/no-such-model")
    with pytest.raises(HFImportError, match="not a folder"):
        load_pretrained(tmp_path / "a" / "b" / "c")


def test_a_missing_extra_names_it(made, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now fails
    with pytest.raises(MissingExtraError, match=r"pip install 'qkv\[hf\]'") as info:
        load_pretrained(made["bert"])
    assert isinstance(info.value, ImportError) and isinstance(info.value, ValueError)


def test_core_imports_without_the_extra():
    code = (
        "import sys; sys.modules['transformers'] = sys.modules['sentencepiece'] = None\n"
        "import qkv, qkv.interop, qkv.tasks.translation, qkv.viz.explain, qkv.cli; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
