"""qkv.scoring: the numbers must be sacreBLEU's own, with its signatures."""

from __future__ import annotations

import pytest
import sacrebleu

from qkv.scoring import Scores, score

HYPS = [
    "A man in an orange hat starring at something.",
    "A Boston Terrier is running on lush green grass in front of a white fence.",
    "a girl in karate uniform breaking a stick with a front kick.",
    "Five people wearing winter jackets and helmets stand in the snow.",
]
REFS = [
    "A man in an orange hat staring at something.",
    "A Boston terrier is running in the lush green grass in front of a white fence.",
    "A girl in a karate uniform is breaking a stick with a front kick.",
    "Five people in winter jackets and helmets stand in the snow, with snowmobiles in the background.",
]


def test_matches_sacrebleu_called_directly():
    s = score(HYPS, REFS)
    assert s.bleu == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert s.bleu_lowercase == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS], lowercase=True).score)
    assert s.chrf == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score)
    assert s.n_sentences == 4
    assert 0 < s.bleu < s.bleu_lowercase < 100  # casing errors ("Terrier", "a girl") cost cased BLEU only


def test_signatures_say_cased_13a_and_lowercased():
    s = score(HYPS, REFS)
    assert "case:mixed" in s.bleu_signature and "tok:13a" in s.bleu_signature
    assert "case:lc" in s.bleu_lowercase_signature and "tok:13a" in s.bleu_lowercase_signature
    assert "nc:6" in s.chrf_signature
    assert f"version:{sacrebleu.__version__}" in s.bleu_signature


def test_perfect_match_is_100_and_corpus_level():
    s = score(REFS, REFS)
    assert s.bleu == pytest.approx(100.0) and s.chrf == pytest.approx(100.0)
    assert s.bleu_lowercase == pytest.approx(100.0)
    # corpus BLEU is not the mean of sentence BLEUs: one empty hypothesis lowers it, but it stays > 0
    partial = score([*REFS[:3], ""], REFS)
    assert 0 < partial.bleu < 100


def test_as_dict_and_format():
    s = score(HYPS, REFS)
    d = s.as_dict()
    assert d["bleu"] == s.bleu and d["chrf_signature"] == s.chrf_signature
    assert Scores(**d) == s
    text = s.format()
    assert f"{s.bleu:.2f}" in text and s.bleu_signature in text and f"{s.chrf:.2f}" in text


def test_mismatched_counts_are_refused():
    with pytest.raises(ValueError, match="4 hypotheses but 3 references"):
        score(HYPS, REFS[:3])
    with pytest.raises(ValueError, match="empty"):
        score([], [])
    with pytest.raises(TypeError, match="list of strings"):
        score("a single string", "a single string")
    with pytest.raises(TypeError, match=r"hypotheses\[1\]"):
        score(["ok", 3], ["ok", "three"])
