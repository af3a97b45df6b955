"""bench/peers.py: qkv vs a Hugging Face Marian trained with Seq2SeqTrainer, on the same token ids.

The end-to-end test runs both sides for a few steps on a handful of Multi30k sentences (seconds); the others
check the pieces: the ids the Marian sees against qkv's ``collate``, the validation schedule, the ratio.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from qkv.data.batching import collate
from qkv.models.transformer import TransformerConfig

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def peers(monkeypatch):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # Seq2SeqTrainer needs it
    monkeypatch.syspath_prepend(str(BENCH))
    import _peer_marian
    import peers

    return peers, _peer_marian


def test_marian_sees_qkv_token_ids(peers):
    _, peer = peers
    pairs = [([5, 6, 7], [8, 9]), ([5], [8, 9, 10, 11]), ([12, 13], [14])]
    config = TransformerConfig.preset("tiny", src_vocab_size=20, tgt_vocab_size=20, tie_embeddings="all")
    model = peer.marian_from_config(config)
    hf = peer.collate_features(peer.features(pairs), model)
    qkv = collate(pairs)
    assert torch.equal(hf["input_ids"], qkv.src)
    assert torch.equal(hf["attention_mask"], qkv.src.ne(0))
    # the decoder inputs agree wherever a label counts; after the end HF's shift leaves the EOS of a short
    # sentence where qkv pads, seen (causal mask) only by positions whose labels are ignored
    counted = qkv.tgt_out.ne(0)
    assert torch.equal(hf["decoder_input_ids"][counted], qkv.tgt_in[counted])
    assert torch.equal(hf["labels"].masked_fill(hf["labels"].eq(-100), 0), qkv.tgt_out)
    assert hf["labels"].eq(-100).sum() == qkv.tgt_out.eq(0).sum()  # the padding is ignored by the HF loss
    assert model.config.d_model == config.d_model and model.config.encoder_layers == config.n_layers


def test_validation_schedule_by_steps(peers):
    _, peer = peers
    seen = []
    schedule = peer.TimedValidation(total=5, every=2, evaluate=lambda m: seen.append(m) or 1.5, by_steps=True)
    model = torch.nn.Linear(1, 1)
    schedule.begin()
    stops = [schedule.after_step(model, step) for step in range(1, 6)]
    assert stops == [False, False, False, False, True]
    assert [p["step"] for p in schedule.points] == [2, 4, 5]
    assert all(p["bleu"] == 1.5 for p in schedule.points) and len(seen) == 3
    assert model.training  # put back into training mode after each evaluation


def test_minutes_to_reach(peers):
    bench, _ = peers
    curve = [{"minutes": 2.0, "bleu": 10.0}, {"minutes": 4.0, "bleu": 20.0}, {"minutes": 6.0, "bleu": 18.0}]
    assert bench.minutes_to_reach(curve, 5.0) == pytest.approx(1.0)  # from (0, 0) to the first point
    assert bench.minutes_to_reach(curve, 15.0) == pytest.approx(3.0)
    assert bench.minutes_to_reach(curve, 20.0) == pytest.approx(4.0)
    assert bench.minutes_to_reach(curve, 25.0) is None


def _handful(data: Path, out: Path, lines: dict[str, int]) -> Path:
    out.mkdir()
    for split, n in lines.items():
        for lang in ("de", "en"):
            with gzip.open(data / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
                head = [next(f) for _ in range(n)]
            (out / f"{split}.{lang}").write_text("".join(head), encoding="utf-8")
    return out


@pytest.mark.slow
@pytest.mark.data
def test_peers_end_to_end(peers, shared_data, tmp_path, capsys):
    bench, _ = peers
    data = _handful(shared_data / "multi30k", tmp_path / "data", {"train": 48, "val": 6, "test_2016_flickr": 6})
    out = tmp_path / "out"
    argv = ["--tiny", "--steps", "4", "--eval-every-steps", "2", "--threads", "1", "--data", str(data),
            "--out", str(out), "--hf-precision", "fp32"]  # fmt: skip
    assert bench.main(argv) == 0
    qkv, hf = (json.loads((out / f"{side}.json").read_text()) for side in ("qkv", "hf"))
    for side in (qkv, hf):
        assert [p["step"] for p in side["points"]] == [2, 4]
        assert all(0 <= p["bleu"] <= 100 for p in side["points"])
        assert 0 <= side["test"]["last"] <= 100
    assert qkv["fingerprint"] == hf["fingerprint"]  # identical token ids given to both
    printed = capsys.readouterr().out
    table = printed[printed.index("| eval |"):]
    assert table.count("\n| 1 |") + table.count("\n| 2 |") == 2
    assert "token ids identical: yes" in table
    assert "final test_2016_flickr sacreBLEU (beam 5): qkv last" in table and "HF Marian last" in table
