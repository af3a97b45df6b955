"""A Marian (OPUS-MT) model built locally with random weights, opened as a qkv.Transformer: same logits, same
attention maps, same greedy translation as transformers, text in and text out through the imported tokenizers."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from hf_models import SENTENCES, eager, marian_folder
from qkv.decode import beam_search, greedy_search
from qkv.interop import load_pretrained
from qkv.tasks.translation import Translator
from qkv.viz.explain import explain_head
from qkv.viz.explain_decoder import explain_decoder_head

pytestmark = pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")

TEXTS = ["ein kleines mädchen spielt im park", "zwei hunde", "the man reads"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return marian_folder(tmp_path_factory.mktemp("marian"))


@pytest.fixture(scope="module")
def imported(folder):
    return load_pretrained(folder)


@pytest.fixture(scope="module")
def hf_tokenizer(folder):
    import transformers

    return transformers.MarianTokenizer.from_pretrained(folder)


def _batch(imported, hf_tokenizer, texts):
    """The same batch for both: HF ids (pad = V - 1, start = pad) and qkv ids (pad 0, <s> 1, </s> 2)."""
    vmap = imported.tokenizers.src._map
    enc = hf_tokenizer(texts, padding=True, return_tensors="pt")
    gen = torch.Generator().manual_seed(1)
    tgt = torch.randint(2, hf_tokenizer.vocab_size - 1, (len(texts), 6), generator=gen)  # ordinary tokens
    start = imported.model.config.src_vocab_size - 2  # Marian's pad = decoder start
    hf_dec = torch.cat([torch.full((len(texts), 1), start), tgt], 1)
    qkv_src = vmap.to_qkv[enc.input_ids]
    qkv_tgt = torch.cat([torch.ones(len(texts), 1, dtype=torch.long), vmap.to_qkv[tgt]], 1)  # <s> = 1
    return enc, hf_dec, qkv_src, qkv_tgt, vmap


def test_config_has_marians_flagged_options(imported):
    c = imported.model.config
    assert imported.kind == "translation"
    assert (c.activation, c.positional_layout, c.output_bias, c.scale_embeddings) == ("swish", "half", True, True)
    assert c.tie_embeddings == "all" and c.norm == "post"


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-5), (torch.float32, 1e-4)])
def test_logits_and_every_attention_map_equal_transformers(folder, imported, hf_tokenizer, dtype, tol):
    hf = eager("MarianMTModel", folder, dtype)
    model = imported.model.to(dtype)
    enc, hf_dec, src, tgt, vmap = _batch(imported, hf_tokenizer, TEXTS)
    with torch.no_grad():
        ref = hf(**enc, decoder_input_ids=hf_dec, output_attentions=True)
        logits, maps = model(src, tgt, return_attention=True)
    imported.model.float()
    assert (logits[..., vmap.to_qkv] - ref.logits).abs().max() < tol  # every one of Marian's V outputs
    for ours, theirs in ((maps.encoder_self, ref.encoder_attentions), (maps.decoder_self, ref.decoder_attentions),
                         (maps.cross, ref.cross_attentions)):
        assert len(ours) == len(theirs) == 2
        for a, b in zip(ours, theirs):
            assert a.shape == b.shape
            assert (a - b).abs().max() < tol


def test_greedy_translation_equals_generate_token_for_token(folder, imported, hf_tokenizer):
    hf = eager("MarianMTModel", folder)
    pad = hf.config.pad_token_id
    vmap = imported.tokenizers.src._map
    for text in TEXTS:
        enc = hf_tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            out = hf.generate(**enc, num_beams=1, do_sample=False, max_new_tokens=enc.input_ids.shape[1] + 5,
                              bad_words_ids=[[pad]])
        ref = []
        for t in out[0, 1:].tolist():  # after the start token, up to </s>
            if t == hf.config.eos_token_id:
                break
            ref.append(int(vmap.to_qkv[t]))
        ours = greedy_search(imported.model, vmap.to_qkv[enc.input_ids], max_len_b=5)[0]
        assert ours == ref
        assert len(ref) > 0
        text_out = Translator(imported.model, imported.tokenizers, max_len_b=5).translate([text], beam_size=1)[0]
        assert text_out == hf_tokenizer.decode(out[0], skip_special_tokens=True)


def test_beam_search_runs_and_beam_1_is_greedy(imported):
    vmap = imported.tokenizers.src._map
    rows = [torch.tensor([*imported.tokenizers.src.encode(t), 2]) for t in ["zwei hunde", "der mann liest"]]
    src = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)  # (2, S), padded with 0 = qkv's pad
    beams = beam_search(imported.model, src, beam_size=4, alpha=0.6, max_len_b=6)
    assert len(beams) == 2 and all(0 < len(b) <= src.shape[1] + 6 for b in beams)
    assert all(3 <= t < vmap.size for b in beams for t in b)  # never pad, <s> or </s>
    assert beam_search(imported.model, src, beam_size=1, max_len_b=6) == greedy_search(imported.model, src, max_len_b=6)


@pytest.mark.parametrize("early_stopping", [False, True])
def test_beam_search_equals_generate_with_either_stopping_rule(folder, imported, hf_tokenizer, early_stopping):
    """α = 0, so both rank by log-probability alone (HF divides by |Y|^α, qkv by ((5 + |Y|) / 6)^α), under
    each of HF's stopping rules, ``early_stopping=False`` (the default of both) and ``True``. This random model's
    searches run to their length limit; where the two rules part is tested on scripted models
    (tests/test_decode.py)."""
    hf = eager("MarianMTModel", folder)
    pad, eos = hf.config.pad_token_id, hf.config.eos_token_id
    vmap = imported.tokenizers.src._map
    for text in [*TEXTS, SENTENCES[4]]:
        enc = hf_tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            out = hf.generate(**enc, num_beams=4, do_sample=False, length_penalty=0.0, early_stopping=early_stopping,
                              max_new_tokens=enc.input_ids.shape[1] + 5, bad_words_ids=[[pad]])  # fmt: skip
        ref = [int(vmap.to_qkv[t]) for t in out[0, 1:].tolist() if t not in (eos, pad)]
        src = vmap.to_qkv[enc.input_ids]
        ours = beam_search(imported.model, src, beam_size=4, alpha=0.0, max_len_b=5, early_stopping=early_stopping)
        assert ours[0] == ref, text


@pytest.mark.parametrize("text", [*TEXTS, SENTENCES[4], "xyz qqq!", ">>en<< zwei hunde"])
def test_tokenizer_text_ids_text_match_marian_tokenizer(imported, hf_tokenizer, text):
    src = imported.tokenizers.src
    vmap = src._map
    hf_ids = hf_tokenizer(text).input_ids[:-1]  # without the </s> it appends (qkv's batching appends it)
    assert [int(vmap.to_hf[i]) for i in src.encode(text)] == hf_ids
    assert src.tokens(text) == hf_tokenizer.convert_ids_to_tokens(hf_ids)
    assert src.decode(src.encode(text)) == hf_tokenizer.decode(hf_ids)
    assert imported.tokenizers.tgt.decode(src.encode(text)) == hf_tokenizer.decode(hf_ids, skip_special_tokens=True) \
        or "<unk>" in src.decode(src.encode(text))


def test_explain_passes_for_every_layer_and_head_of_each_kind(imported):
    src = torch.tensor([[*imported.tokenizers.src.encode(TEXTS[0]), 2]])
    tokens = [*imported.tokenizers.src.tokens(TEXTS[0]), "</s>"]
    tgt = torch.tensor([[1, *imported.tokenizers.tgt.encode("a small girl")]])  # <s> first
    for layer in range(2):
        for head in range(2):
            walk = explain_head(imported.model, src, layer, head, tokens)
            assert walk.max_abs_diff < 1e-4, (layer, head, walk.differences())
            for kind in ("self", "cross"):
                walk = explain_decoder_head(imported.model, src, tgt, layer, head, kind)
                assert walk.max_abs_diff < 1e-4, (kind, layer, head, walk.differences())


def test_the_translators_attention_view_works_on_the_imported_model(imported):
    view = Translator(imported.model, imported.tokenizers, max_len_b=5).attention(TEXTS[1], beam_size=2)
    s, t = len(view.src_tokens), len(view.tgt_tokens)
    assert view.src_tokens[-1] == "</s>" and view.tgt_tokens[0] == "<s>" and view.translation is not None
    assert view.maps.encoder_self[0].shape == (1, 2, s, s)
    assert view.maps.decoder_self[1].shape == (1, 2, t, t) and view.maps.cross[1].shape == (1, 2, t, s)
