"""The translation pipeline through the command line: train -> checkpoints -> translate -> evaluate -> resume.

On generated data (always) and on a tiny slice of Multi30k (when ../shared/data is there).
"""

from __future__ import annotations

import gzip
import json

import pytest
import torch
from safetensors.torch import load_file

import qkv.tasks.translation.translator as translator_module
from qkv.cli import main
from qkv.data.synthetic import write_demo_corpus

TINY = ["--preset", "tiny", "--lr-schedule", "inverse_sqrt", "--lr", "2e-3", "--warmup", "10", "--no-progress",
        "--log-every", "10", "--device", "cpu"]


def train_argv(data, src, tgt, out, *extra):
    return ["train", "--data", str(data), "--src", src, "--tgt", tgt, "--out", str(out), *TINY, *extra]


def test_train_translate_evaluate_resume_on_generated_data(tmp_path, capsys, monkeypatch):
    data = write_demo_corpus(tmp_path / "data", n_train=400, n_val=40, n_test=40, seed=3)
    out = tmp_path / "run"
    argv = train_argv(data, "words", "iso", out, "--tokenizer", "word", "--separate-vocab", "--max-steps", "24",
                      "--max-tokens", "512", "--save-every", "6", "--test-beam", "2", "--test-alpha", "1.0",
                      "--no-bleu")
    assert main(argv) == 0
    for folder in ("last", "best", "averaged"):
        assert (out / folder / "model.safetensors").is_file(), folder
    results = json.loads((out / "results.json").read_text())
    assert results["train"]["steps"] == 24
    assert set(results["test"]) == {"best", "averaged"}
    assert results["test"]["best"]["bleu_signature"].startswith("nrefs:1")
    assert results["test"]["best"]["alpha"] == 1.0 and results["test"]["best"]["beam"] == 2
    capsys.readouterr()

    # translate: sentence arguments in, one line each out, in order
    assert main(["translate", "--model", str(out / "best"), "--beam", "2", "may 4 , 1999", "the 1st of june 2001"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    # --early-stopping (and --alpha) reach the search, in translate, evaluate and attention
    rules, decode = [], translator_module.decode_corpus
    def recording(*a, **kw):
        rules.append((kw["early_stopping"], kw["alpha"]))
        return decode(*a, **kw)

    monkeypatch.setattr(translator_module, "decode_corpus", recording)
    assert main(["translate", "--model", str(out / "best"), "--beam", "2", "--early-stopping", "may 4 , 1999"]) == 0
    assert main(["evaluate", "--model", str(out / "best"), "--data", str(data), "--src", "words", "--tgt", "iso",
                 "--beam", "2", "--early-stopping"]) == 0  # fmt: skip
    assert main(["translate", "--model", str(out / "best"), "--beam", "2", "may 4 , 1999"]) == 0
    assert main(["attention", "may 4 , 1999", "--model", str(out / "best"), "--beam", "2", "--alpha", "1.4",
                 "--early-stopping", "--out", str(tmp_path / "maps"), "--formats", "svg"]) == 0  # fmt: skip
    assert rules == [(True, 0.6), (True, 0.6), (False, 0.6), (True, 1.4)]
    monkeypatch.undo()
    capsys.readouterr()

    # evaluate a model on the test split; then score its own translations from a file: the same numbers
    hyp = tmp_path / "hyp.txt"
    assert main(["evaluate", "--model", str(out / "best"), "--data", str(data), "--src", "words", "--tgt", "iso",
                 "--beam", "1", "--json", "--output", str(hyp)]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--hyp", str(hyp), "--ref", str(data / "test.iso"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bleu"] == pytest.approx(scored["bleu"])

    # average another window of the kept checkpoints: the element-wise mean of the newest two
    kept = sorted((out / "checkpoints").iterdir())
    avg = tmp_path / "avg2"
    assert main(["average", "--run", str(out), "--last", "2", "--out", str(avg)]) == 0
    assert kept[-2].name in capsys.readouterr().out
    mean, newest = load_file(avg / "model.safetensors"), load_file(kept[-1] / "model.safetensors")
    older = load_file(kept[-2] / "model.safetensors")
    assert mean.keys() == newest.keys()
    for name, value in mean.items():
        assert torch.allclose(value, (newest[name] + older[name]) / 2, atol=1e-6), name
    assert any(not torch.equal(mean[name], newest[name]) for name in mean)
    assert main(["translate", "--model", str(avg), "--beam", "1", "may 4 , 1999"]) == 0
    capsys.readouterr()
    assert main(["average", "--run", str(out), "--last", "2", "--out", str(avg)]) == 2  # not empty: refused
    assert "not empty" in capsys.readouterr().err
    assert main(["average", "--run", str(out), "--last", str(len(kept) + 1), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert f"keeps {len(kept)}" in err and "--keep-checkpoints" in err and len(err.strip().splitlines()) == 1
    assert main(["average", "--run", str(tmp_path / "nowhere"), "--last", "2", "--out", str(tmp_path / "y")]) == 2
    assert "no such run folder" in capsys.readouterr().err

    # resume: the run continues from last/ to the new limit
    assert main([*argv[:-1], "--resume", "--max-steps", "30", "--no-test"]) == 0
    assert json.loads((out / "last" / "config.json").read_text())["step"] == 30


def test_bad_data_folder_is_a_clear_error(tmp_path, capsys):
    assert main(train_argv(tmp_path / "nowhere", "de", "en", tmp_path / "run", "--max-steps", "1")) == 2
    assert "nowhere" in capsys.readouterr().err


def test_train_on_a_slice_of_multi30k(shared_data, tmp_path):
    data = tmp_path / "m30k"
    data.mkdir()
    for split, n in (("train", 300), ("val", 30), ("test_2016_flickr", 30)):
        for lang in ("de", "en"):
            with gzip.open(shared_data / "multi30k" / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
                lines = [next(f) for _ in range(n)]
            (data / f"{split}.{lang}").write_text("".join(lines), encoding="utf-8")
    out = tmp_path / "run"
    assert main(train_argv(data, "de", "en", out, "--vocab-size", "400", "--max-steps", "8", "--max-tokens", "1024",
                           "--test-beam", "1", "--average-last", "1")) == 0
    results = json.loads((out / "results.json").read_text())
    assert 0.0 <= results["test"]["best"]["bleu"] <= 100.0
    assert json.loads((out / "best" / "config.json").read_text())["arch"] == "transformer"
