"""Translation quality: corpus BLEU and chrF with sacreBLEU, reported with their signatures.

The paper reports BLEU (§6.1, Table 2). Scores are comparable across papers only when computed the same way,
so this module only wraps sacreBLEU (Post, 2018) on *detokenized* text and returns the signature that says
how: ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:…``. The headline is cased BLEU with the 13a
tokenizer; lowercased BLEU (``case:lc``) is given beside it because many Multi30k papers report it; chrF
(Popović, 2015) is character-level and more reliable on small test sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sacrebleu.metrics import BLEU, CHRF


@dataclass(frozen=True)
class Scores:
    """Corpus-level scores of one system output (all on a 0–100 scale).

    Attributes:
        bleu: cased BLEU, 13a tokenization (sacreBLEU's default).
        chrf: chrF (character n-grams up to 6, β = 2).
        bleu_lowercase: BLEU on lowercased text, for comparison with papers that report it.
        bleu_signature, chrf_signature, bleu_lowercase_signature: sacreBLEU signatures (how each score was
            computed).
        bleu_details: the BLEU line as sacreBLEU prints it (n-gram precisions, brevity penalty, lengths).
        n_sentences: number of hypothesis/reference pairs.
    """

    bleu: float
    chrf: float
    bleu_lowercase: float
    bleu_signature: str
    chrf_signature: str
    bleu_lowercase_signature: str
    bleu_details: str
    n_sentences: int

    def as_dict(self) -> dict[str, float | str | int]:
        """A flat dict, e.g. for a JSON results file."""
        return asdict(self)

    def format(self) -> str:
        """A few human-readable lines: each score with its signature."""
        return "\n".join(
            [
                f"BLEU    {self.bleu:6.2f}  {self.bleu_signature}",
                f"BLEU-lc {self.bleu_lowercase:6.2f}  {self.bleu_lowercase_signature}",
                f"chrF    {self.chrf:6.2f}  {self.chrf_signature}",
                f"BLEU details: {self.bleu_details}, {self.n_sentences} sentences",
            ]
        )


def _check_texts(name: str, texts: Sequence[str]) -> None:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a list of strings (one per sentence), got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] must be a string, got {type(text).__name__}")


def score(hypotheses: Sequence[str], references: Sequence[str]) -> Scores:
    """Corpus BLEU (cased, 13a), lowercased BLEU and chrF of ``hypotheses`` against one reference each.

    Args:
        hypotheses: system outputs, detokenized, one string per sentence.
        references: reference translations, detokenized, aligned line by line with ``hypotheses``.

    Returns:
        A :class:`Scores`.

    Raises:
        ValueError: when the two lists differ in length or are empty.

    Example:
        >>> s = score(["the cat sat on the mat"], ["the cat sat on the mat"])
        >>> round(s.bleu, 1), round(s.chrf, 1)
        (100.0, 100.0)
    """
    _check_texts("hypotheses", hypotheses)
    _check_texts("references", references)
    if len(hypotheses) != len(references):
        raise ValueError(
            f"got {len(hypotheses)} hypotheses but {len(references)} references: they must be aligned "
            "line by line (one hypothesis per reference sentence)"
        )
    if not hypotheses:
        raise ValueError("cannot score an empty corpus: no hypotheses and no references")
    hyps, refs = list(hypotheses), [list(references)]
    bleu, bleu_lc, chrf = BLEU(), BLEU(lowercase=True), CHRF()
    bleu_result = bleu.corpus_score(hyps, refs)
    bleu_lc_result = bleu_lc.corpus_score(hyps, refs)
    chrf_result = chrf.corpus_score(hyps, refs)
    return Scores(
        bleu=bleu_result.score,
        chrf=chrf_result.score,
        bleu_lowercase=bleu_lc_result.score,
        bleu_signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
        bleu_lowercase_signature=str(bleu_lc.get_signature()),
        bleu_details=str(bleu_result).split(" = ", 1)[1].split(" ", 1)[1],  # precisions, BP, lengths
        n_sentences=len(hyps),
    )
