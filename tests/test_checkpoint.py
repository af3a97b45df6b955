"""Checkpoint folders: round trip, tied weights, atomic writes, clear errors, averaging (§6.1)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

import qkv.train.checkpoint as ckpt
from qkv import Transformer, TransformerConfig
from qkv.train.checkpoint import (
    CheckpointError,
    average_checkpoints,
    load_checkpoint,
    load_state_dict,
    load_trainer_state,
    save_checkpoint,
)


def tiny(vocab: int = 40, **overrides) -> Transformer:
    return Transformer(
        TransformerConfig.preset("tiny", src_vocab_size=vocab, tgt_vocab_size=vocab, **overrides)
    )


class FakeTokenizers:
    def __init__(self, text: str) -> None:
        self.text = text

    def save(self, folder) -> None:
        (folder / "tokenizer.json").write_text(self.text)


def test_round_trip_with_tied_weights_config_tokenizer_and_trainer_state(tmp_path):
    model = tiny()
    opt = torch.optim.Adam(model.parameters())
    model(torch.randint(1, 40, (2, 5)), torch.randint(1, 40, (2, 4))).sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "step": 7, "rng": [{"torch": torch.get_rng_state()}]}
    folder = save_checkpoint(
        tmp_path / "last",
        model,
        train_config={"max_tokens": 100},
        step=7,
        epoch=2,
        metrics={"bleu": 12.5},
        tokenizers=FakeTokenizers("vocab!"),
        trainer_state=state,
    )
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "trainer_state.pt",
    ]
    config = json.loads((folder / "config.json").read_text())
    assert config["arch"] == "transformer" and config["model"] == model.config.to_dict()
    assert (config["step"], config["epoch"], config["metrics"], config["train"]) == (
        7,
        2,
        {"bleu": 12.5},
        {"max_tokens": 100},
    )
    loaded = load_checkpoint(folder, trainer_state=True)  # rebuilt from config.json
    assert loaded.step == 7 and loaded.metrics == {"bleu": 12.5}
    for (name, a), b in zip(model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), name
    m = loaded.model
    assert m.generator.weight.data_ptr() == m.src_embed.weight.data_ptr() == m.tgt_embed.weight.data_ptr()
    restored = torch.optim.Adam(m.parameters())
    restored.load_state_dict(loaded.trainer_state["optimizer"])
    assert loaded.trainer_state["step"] == 7


def test_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    old, new = tiny(), tiny()
    save_checkpoint(tmp_path / "last", old, step=1)

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt, "save_model", crash)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(tmp_path / "last", new, step=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no temp folder left behind
    loaded = load_checkpoint(tmp_path / "last")
    assert loaded.step == 1
    assert torch.equal(loaded.model.src_embed.weight, old.src_embed.weight)


def test_kill_between_the_renames_is_recovered(tmp_path):
    model = tiny()
    save_checkpoint(tmp_path / "last", model, step=3)
    os.replace(tmp_path / "last", tmp_path / ".last.old")  # the state a kill mid-swap leaves behind
    assert load_checkpoint(tmp_path / "last").step == 3
    save_checkpoint(tmp_path / "last", model, step=4)
    assert load_checkpoint(tmp_path / "last").step == 4
    assert not (tmp_path / ".last.old").exists()


def test_missing_and_corrupt_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_checkpoint(tmp_path / "nowhere")
    folder = save_checkpoint(tmp_path / "c", tiny(), step=1)
    (folder / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match=r"c/model.safetensors: not a readable safetensors file"):
        load_checkpoint(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        load_checkpoint(folder)
    (folder / "config.json").write_text('{\n  "arch": "transformer",\n  oops\n}')
    with pytest.raises(CheckpointError, match=r"config.json:3: invalid JSON"):
        load_checkpoint(folder)
    (folder / "trainer_state.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match=r"trainer_state\.pt"):
        load_trainer_state(folder)


class NotATensor:
    pass


def test_trainer_state_refuses_arbitrary_objects(tmp_path):
    folder = save_checkpoint(tmp_path / "c", tiny(), trainer_state={"evil": NotATensor()})
    with pytest.raises(CheckpointError, match=r"trainer_state\.pt"):
        load_trainer_state(folder)


def test_mismatched_weights_name_the_tensor_with_expected_and_got(tmp_path):
    folder = save_checkpoint(tmp_path / "c", tiny(vocab=40))
    with pytest.raises(
        CheckpointError,
        match=r"tensor '(generator|src_embed\.embedding)\.weight': expected shape \(50, 64\), got \(40, 64\)",
    ):
        load_checkpoint(folder, model=tiny(vocab=50))
    # a tensor missing from the file
    state = {k: v.clone() for k, v in ckpt.load_file(str(folder / "model.safetensors")).items()}
    del state["decoder.layers.1.ffn_block.norm.weight"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing tensor 'decoder.layers.1.ffn_block.norm.weight'"):
        load_checkpoint(folder)
    with pytest.raises(CheckpointError, match="unexpected tensor 'extra'"):
        load_state_dict(
            tiny(),
            {**state, "decoder.layers.1.ffn_block.norm.weight": torch.ones(64), "extra": torch.zeros(1)},
        )


def test_average_of_two_checkpoints_is_the_mean(tmp_path):
    a, b = tiny(), tiny()
    save_checkpoint(tmp_path / "a", a)
    save_checkpoint(tmp_path / "b", b)
    avg = average_checkpoints([tmp_path / "a", tmp_path / "b"])
    sa, sb = a.state_dict(), b.state_dict()
    for name, tensor in avg.items():
        assert torch.allclose(tensor, (sa[name] + sb[name]) / 2, atol=1e-7), name
    model = tiny()
    load_state_dict(model, avg)
    assert torch.allclose(model.generator.weight, (a.generator.weight + b.generator.weight) / 2, atol=1e-7)
    save_checkpoint(tmp_path / "big", tiny(vocab=41))
    with pytest.raises(CheckpointError, match="expected shape"):
        average_checkpoints([tmp_path / "a", tmp_path / "big"])
