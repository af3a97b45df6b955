"""`qkv export`: Hugging Face, CTranslate2 and ONNX exports compute the qkv model (issue 12).

A tiny Transformer is trained in this module for a few seconds on the dates task (so greedy outputs are real
translations, not one repeated token); random models cover the options only some formats express (pre-LN,
learned positions, GELU, untied embeddings, separate vocabularies). On Multi30k (when present) a fast-trained
model checks greedy equality on a sample of test sentences; the full test set is bench/decode.py's job.
"""

from __future__ import annotations

import gzip
import json

import pytest
import torch

from qkv import Transformer, TransformerConfig
from qkv.cli import main
from qkv.data.batching import collate
from qkv.data.synthetic import write_demo_corpus
from qkv.data.tokenizer import TokenizerPair
from qkv.decode import beam_search, greedy_search
from qkv.scoring import score
from qkv.tasks.translation import Translator
from qkv.train.checkpoint import save_checkpoint

transformers = pytest.importorskip("transformers")
ctranslate2 = pytest.importorskip("ctranslate2")
pytest.importorskip("onnxruntime")

from qkv.interop.export_ctranslate2 import CTranslate2Model  # noqa: E402
from qkv.interop.export_onnx import OnnxTransformer, onnx_greedy  # noqa: E402

TINY = ["--preset", "tiny", "--lr-schedule", "inverse_sqrt", "--lr", "3e-3", "--warmup", "20", "--no-progress",
        "--log-every", "1000", "--device", "cpu", "--no-test", "--no-bleu", "--average-last", "1"]


def _train(data, src, tgt, out, *extra) -> None:
    argv = ["train", "--data", str(data), "--src", src, "--tgt", tgt, "--out", str(out), *TINY, *extra]
    assert main(argv) == 0


@pytest.fixture(scope="module")
def dates(tmp_path_factory):
    """A tiny model trained on the dates task (joint word vocabulary) and 60 test sources with references."""
    root = tmp_path_factory.mktemp("export")
    data = write_demo_corpus(root / "data", n_train=1500, n_val=30, n_test=40, seed=3)
    torch.manual_seed(0)
    _train(data, "words", "iso", root / "run", "--tokenizer", "word", "--max-steps", "100", "--max-tokens", "2048")
    sources = (data / "test.words").read_text(encoding="utf-8").splitlines()
    references = (data / "test.iso").read_text(encoding="utf-8").splitlines()
    return root / "run" / "best", sources, references


def _batches(translator: Translator, sentences: list[str], size: int = 16) -> list[torch.Tensor]:
    ids = translator.encode_sources(sentences)
    return [collate([(s, []) for s in ids[i : i + size]]).src for i in range(0, len(ids), size)]  # (B, S) each


def _qkv_greedy(translator: Translator, batches) -> list[list[int]]:
    return [y for src in batches for y in greedy_search(translator.model, src)]


def _hf_greedy(hf, batches, max_len_b: int = 50) -> list[list[int]]:
    """HF ``generate()`` greedy, batch by batch; each output cut at qkv's own limit for its sentence (HF bounds
    the batch by its longest source; greedy outputs are prefixes of longer ones, so the cut is exact)."""
    out = []
    for src in batches:
        rows = hf.generate(input_ids=src, attention_mask=(src != 0).long(), max_new_tokens=src.shape[1] + max_len_b)
        limits = ((src != 0).sum(1) + max_len_b).tolist()  # qkv's §6.1 limit per sentence
        out += [[t for t in row if t > 2][:n] for row, n in zip(rows.tolist(), limits)]  # no BOS, EOS, PAD
    return out


def _export(checkpoint, to, out, *extra) -> None:
    assert main(["export", "--model", str(checkpoint), "--to", to, "--out", str(out), *extra]) == 0


# -- Hugging Face ------------------------------------------------------------------------------------------
def test_hf_export_reloads_to_the_same_function(dates, tmp_path):
    checkpoint, sources, _ = dates
    _export(checkpoint, "hf", tmp_path / "hf")
    hf = transformers.MarianMTModel.from_pretrained(tmp_path / "hf").eval()
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    translator = Translator.load(checkpoint)
    batches = _batches(translator, sources)
    ours = _qkv_greedy(translator, batches)
    assert sum(len(set(y)) > 2 for y in ours) > len(ours) // 2, "the trained model should write real outputs"

    src = batches[0]  # (B, S), right-padded
    tgt = collate([([], y) for y in ours[: len(src)]]).tgt_in  # (B, T): BOS + qkv's own greedy outputs
    with torch.no_grad():
        theirs = hf(input_ids=src, attention_mask=(src != 0).long(), decoder_input_ids=tgt).logits
        assert (theirs - translator.model(src, tgt)).abs().max() < 1e-4

    assert _hf_greedy(hf, batches) == ours

    # the tokenizer: the same ids (plus the source EOS qkv's batching appends) and the same text back
    for sentence, ids in zip(sources, translator.encode_sources(sources)):
        assert tok(sentence).input_ids == [*ids, 2]
    for y in ours:
        assert tok.decode(y, skip_special_tokens=True) == translator.tgt_tokenizer.decode(y)
    assert tok.decode([5, 3, 6, 2, 0], skip_special_tokens=True) == translator.tgt_tokenizer.decode([5, 3, 6, 2, 0])


def _random_checkpoint(folder, *, shared=True, **config):
    pair = TokenizerPair.train(["ein kleiner hund läuft", "eine frau"], ["a small dog runs", "a woman"],
                               vocab_size=60, joint=shared)
    cfg = TransformerConfig.preset("tiny", src_vocab_size=pair.src.vocab_size, tgt_vocab_size=pair.tgt.vocab_size,
                                   max_len=64, **config)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        model.generator.weight.mul_(4)  # sharper next-token distributions: greedy outputs vary
    save_checkpoint(folder, model, tokenizers=pair)
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(2, 9, (12,), generator=g).tolist()
    sources = [torch.randint(4, pair.src.vocab_size, (n,), generator=g).tolist() for n in lengths]
    return model, collate([(s, []) for s in sources]).src, sources


def test_hf_export_of_untied_embeddings(tmp_path):
    model, src, _ = _random_checkpoint(tmp_path / "ckpt", tie_embeddings="none", activation="gelu")
    _export(tmp_path / "ckpt", "hf", tmp_path / "hf")
    hf = transformers.MarianMTModel.from_pretrained(tmp_path / "hf").eval()
    tgt = torch.randint(4, model.config.tgt_vocab_size, (src.shape[0], 6))
    with torch.no_grad():
        assert (hf(input_ids=src, attention_mask=(src != 0).long(), decoder_input_ids=tgt).logits
                - model(src, tgt)).abs().max() < 1e-4


# -- CTranslate2 -------------------------------------------------------------------------------------------
def test_ctranslate2_export_greedy_equal_and_int8_close(dates, tmp_path):
    checkpoint, sources, references = dates
    translator = Translator.load(checkpoint)
    ids = translator.encode_sources(sources)
    ours = _qkv_greedy(translator, _batches(translator, sources))
    _export(checkpoint, "ctranslate2", tmp_path / "f32")
    ct2 = CTranslate2Model(tmp_path / "f32")
    assert [y for i in range(0, len(ids), 16) for y in ct2.decode(ids[i : i + 16])] == ours

    _export(checkpoint, "ctranslate2", tmp_path / "int8", "--quantization", "int8")
    int8 = CTranslate2Model(tmp_path / "int8").decode(ids)
    decode = translator.tgt_tokenizer.decode
    bleu_ours = score([decode(y) for y in ours], references).bleu
    bleu_int8 = score([decode(y) for y in int8], references).bleu
    assert sum(a == b for a, b in zip(int8, ours)) >= 0.8 * len(ours)
    assert abs(bleu_int8 - bleu_ours) < 5.0


@pytest.mark.parametrize(
    "options",
    [dict(norm="pre", positional="learned", activation="gelu", tie_embeddings="none", eps=1e-6, shared=False),
     dict(tie_embeddings="decoder", n_decoder_layers=1),
     dict(activation="swish")],
    ids=["pre-ln-learned-gelu-untied-separate", "decoder-tied-1-decoder-layer", "swish"],
)
def test_ctranslate2_expresses_every_transformer(tmp_path, options):
    model, src, sources = _random_checkpoint(tmp_path / "ckpt", **options)
    _export(tmp_path / "ckpt", "ctranslate2", tmp_path / "ct2")
    assert CTranslate2Model(tmp_path / "ct2").decode(sources, max_len_b=10) == greedy_search(model, src, max_len_b=10)


# -- ONNX --------------------------------------------------------------------------------------------------
def test_onnx_export_greedy_and_beam_equal(dates, tmp_path):
    checkpoint, sources, _ = dates
    _export(checkpoint, "onnx", tmp_path / "onnx")
    onnx_model = OnnxTransformer(tmp_path / "onnx", threads=1)
    translator = Translator.load(checkpoint)
    batches = _batches(translator, sources)
    assert [y for src in batches for y in onnx_greedy(onnx_model, src)] == _qkv_greedy(translator, batches)
    src = batches[0]
    assert beam_search(onnx_model, src, beam_size=3) == beam_search(translator.model, src, beam_size=3)
    assert TokenizerPair.load(tmp_path / "onnx").src == translator.src_tokenizer  # the tokenizer travels along


def test_onnx_expresses_pre_ln_learned_positions_gelu(tmp_path):
    model, src, _ = _random_checkpoint(tmp_path / "ckpt", norm="pre", positional="learned", activation="gelu",
                                       tie_embeddings="none", shared=False)
    _export(tmp_path / "ckpt", "onnx", tmp_path / "onnx")
    onnx_model = OnnxTransformer(tmp_path / "onnx")
    tgt = torch.randint(4, model.config.tgt_vocab_size, (src.shape[0], 6))
    with torch.no_grad():
        logits = onnx_model.decode(tgt, onnx_model.encode(src), onnx_model.src_mask(src))  # step by step
        assert (logits - model(src, tgt)).abs().max() < 1e-4
    assert onnx_greedy(onnx_model, src, max_len_b=10) == greedy_search(model, src, max_len_b=10)


# -- refusals: one line naming the option, exit 2, nothing written -----------------------------------------
@pytest.mark.parametrize(
    ("options", "to", "named"),
    [(dict(norm="pre"), "hf", "norm='pre'"),
     (dict(positional="learned"), "hf", "positional='learned'"),
     (dict(eps=1e-6), "hf", "eps=1e-06"),
     (dict(shared=False, tie_embeddings="none"), "hf", "tokenizers="),
     ({}, "onnx --quantization int8", "--quantization int8"),
     (dict(attention="hard"), "onnx", "attention='hard'"),
     (dict(attention_window=2), "ctranslate2", "attention_window=2"),
     (dict(positional_layout="half"), "hf", "positional_layout='half'"),
     (dict(output_bias=True), "ctranslate2", "output_bias=True")],
)
def test_what_cannot_be_exported_is_refused(tmp_path, capsys, options, to, named):
    _random_checkpoint(tmp_path / "ckpt", **options)
    to, *extra = to.split()
    out = tmp_path / "out"
    assert main(["export", "--model", str(tmp_path / "ckpt"), "--to", to, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err, err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_rnn_and_taken_folders_are_refused(tmp_path, capsys):
    from qkv.models.rnn import RNNConfig, build_rnn

    pair = TokenizerPair.train(["ein hund"], ["a dog"], vocab_size=30)
    v = pair.src.vocab_size
    save_checkpoint(tmp_path / "rnn", build_rnn(RNNConfig("rnn", v, v, d_embed=8, d_hidden=8)), tokenizers=pair)
    for to in ("hf", "ctranslate2", "onnx"):
        assert main(["export", "--model", str(tmp_path / "rnn"), "--to", to, "--out", str(tmp_path / "o")]) == 2
        assert "arch 'rnn'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

    _random_checkpoint(tmp_path / "ckpt")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    assert main(["export", "--model", str(tmp_path / "ckpt"), "--to", "onnx", "--out", str(taken)]) == 2
    assert "--force" in capsys.readouterr().err and (taken / "keep.txt").read_text() == "mine"
    assert main(["export", "--model", str(tmp_path / "ckpt"), "--to", "onnx", "--out", str(taken), "--force"]) == 0
    assert (taken / "decoder_step.onnx").is_file() and not (taken / "keep.txt").exists()


# -- Multi30k (when present): a fast-trained model, greedy equality on a sample of test sentences -----------
@pytest.mark.data
@pytest.mark.slow
def test_exports_on_multi30k(shared_data, tmp_path):
    data = tmp_path / "m30k"
    data.mkdir()
    for split, n in (("train", 1000), ("val", 20), ("test_2016_flickr", 16)):
        for lang in ("de", "en"):
            with gzip.open(shared_data / "multi30k" / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
                (data / f"{split}.{lang}").write_text("".join(next(f) for _ in range(n)), encoding="utf-8")
    torch.manual_seed(0)
    _train(data, "de", "en", tmp_path / "run", "--vocab-size", "600", "--max-steps", "40", "--max-tokens", "2048")
    checkpoint = tmp_path / "run" / "best"
    assert json.loads((checkpoint / "config.json").read_text())["arch"] == "transformer"
    sources = (data / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    translator = Translator.load(checkpoint)
    batches = _batches(translator, sources)
    b = 20  # outputs of a barely trained model run to their limit: source length + b (qkv's default is 50)
    ours = [y for src in batches for y in greedy_search(translator.model, src, max_len_b=b)]
    for to in ("hf", "ctranslate2", "onnx"):
        _export(checkpoint, to, tmp_path / to)
    hf = transformers.MarianMTModel.from_pretrained(tmp_path / "hf").eval()
    hf_out = _hf_greedy(hf, batches, b)
    ct2 = CTranslate2Model(tmp_path / "ctranslate2")
    ids = translator.encode_sources(sources)
    onnx_model = OnnxTransformer(tmp_path / "onnx")
    assert hf_out == ours
    assert [y for i in range(0, len(ids), 16) for y in ct2.decode(ids[i : i + 16], max_len_b=b)] == ours
    assert [y for src in batches for y in onnx_greedy(onnx_model, src, max_len_b=b)] == ours
