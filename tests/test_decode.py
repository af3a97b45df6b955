"""Greedy and beam search (qkv.decode): exactness on scripted models, equivalences on real Transformers."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from qkv import Transformer, TransformerConfig
from qkv.decode import BOS, EOS, PAD, beam_search, greedy_search, length_penalty, max_output_lengths
from qkv_models import train_copier

A, B, C = 3, 4, 5  # ordinary tokens of the scripted models


# -- a scripted model: the core decoding interface over a table of next-token distributions ------------------
class ScriptedCache:
    """Remembers the prefix fed so far; ``reorder`` selects rows like the real DecoderCache."""

    def __init__(self) -> None:
        self.prefix: torch.Tensor | None = None
        self.offset = 0

    def reorder(self, index: torch.Tensor) -> None:
        self.prefix = self.prefix.index_select(0, index)


class ScriptedModel(nn.Module):
    """p(next | prefix) from ``table`` (prefix without BOS -> {token: prob}), else ``default(prefix)``."""

    def __init__(self, table=None, default=None, vocab_size: int = 6) -> None:
        super().__init__()
        self.table = table or {}
        self.default = default or (lambda prefix: {EOS: 1.0})
        self.vocab_size = vocab_size
        self.calls = 0

    def distribution(self, prefix: tuple[int, ...]) -> dict[int, float]:
        return self.table.get(prefix) or self.default(prefix)

    def log_prob(self, tokens: list[int], eos: bool = True) -> float:
        """log p(tokens [+ EOS]) under the script."""
        seq = [*tokens, EOS] if eos else tokens
        return sum(math.log(self.distribution(tuple(seq[:i]))[seq[i]]) for i in range(len(seq)))

    def encode(self, src):
        return torch.zeros(src.shape[0], src.shape[1], 1)

    def src_mask(self, src):
        return (src != PAD)[:, None, None, :]

    def new_cache(self):
        return ScriptedCache()

    def decode(self, tgt, memory, memory_mask, cache=None):
        assert memory.shape[0] == tgt.shape[0] and memory_mask.shape[0] == tgt.shape[0]
        self.calls += 1
        start = 0
        if cache is not None:
            start = cache.offset
            tgt = tgt if cache.prefix is None else torch.cat([cache.prefix, tgt], dim=1)
            cache.prefix, cache.offset = tgt, tgt.shape[1]
        logits = torch.full((tgt.shape[0], tgt.shape[1] - start, self.vocab_size), -torch.inf)
        for row, seq in enumerate(tgt.tolist()):
            assert seq[0] == BOS
            for i in range(start, len(seq)):
                for token, p in self.distribution(tuple(seq[1 : i + 1])).items():
                    logits[row, i - start, token] = math.log(p)
        return logits


def random_table(seed: int):
    """A different random distribution over {EOS, A, B, C} for every prefix (deterministic per prefix)."""

    def default(prefix):
        g = torch.Generator().manual_seed(seed * 100_003 + hash(prefix) % 100_000)
        p = torch.rand(4, generator=g) + 0.05
        p = p / p.sum()
        return dict(zip([EOS, A, B, C], p.tolist()))

    return default


def one_source(length: int = 1) -> torch.Tensor:
    return torch.tensor([[A] * (length - 1) + [EOS]])


# -- helpers for real Transformers ---------------------------------------------------------------------------
def tiny_transformer(seed: int, vocab: int = 16, **overrides) -> Transformer:
    torch.manual_seed(seed)
    # untied output projection: a random model then ends sentences at varied lengths
    cfg = TransformerConfig.preset(
        "tiny", src_vocab_size=vocab, tgt_vocab_size=vocab, tie_embeddings="none", **overrides
    )
    return Transformer(cfg).eval()


def random_sources(n: int, vocab: int, seed: int, max_words: int = 8) -> torch.Tensor:
    """``n`` sources of random lengths, each ending in EOS, right-padded with PAD."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_words + 1, (n,), generator=g).tolist()
    src = torch.full((n, max(lengths) + 1), PAD, dtype=torch.long)
    for i, n_words in enumerate(lengths):
        src[i, :n_words] = torch.randint(3, vocab, (n_words,), generator=g)
        src[i, n_words] = EOS
    return src


# -- the length penalty --------------------------------------------------------------------------------------
def test_length_penalty_is_the_gnmt_formula():
    assert length_penalty(1, 0.6) == pytest.approx(1.0)
    assert length_penalty(7, 1.0) == pytest.approx(2.0)
    assert length_penalty(10, 0.6) == pytest.approx((15 / 6) ** 0.6)
    assert length_penalty(30, 0.0) == 1.0
    assert torch.allclose(length_penalty(torch.tensor([1.0, 13.0]), 0.5), torch.tensor([1.0, 3**0.5]))


# -- scripted models: what the searches must find ------------------------------------------------------------
def greedy_trap() -> ScriptedModel:
    """Greedy takes A (0.6) then must settle for A EOS (0.6·0.4); B EOS has 0.4·0.9 = 0.36."""
    return ScriptedModel(
        {
            (): {A: 0.6, B: 0.4},
            (A,): {EOS: 0.4, A: 0.3, B: 0.3},
            (B,): {EOS: 0.9, A: 0.05, B: 0.05},
        },
        default=lambda prefix: {EOS: 0.98, A: 0.01, B: 0.01},
    )


@pytest.mark.parametrize("use_cache", [True, False])
def test_beam_finds_the_sequence_greedy_misses(use_cache):
    model = greedy_trap()
    greedy = greedy_search(model, one_source(), use_cache=use_cache)[0]
    beam = beam_search(model, one_source(), beam_size=2, alpha=0.0, use_cache=use_cache)[0]
    assert greedy == [A]
    assert beam == [B]
    assert model.log_prob(beam) > model.log_prob(greedy)
    # a beam of one is greedy, trap included
    assert beam_search(model, one_source(), beam_size=1, use_cache=use_cache)[0] == greedy


def early_finisher() -> ScriptedModel:
    """Beam 2, α 0: after step 2 two hypotheses are finished, EOS (0.3) and B EOS (0.1), while the live
    A C (0.54) goes on to A C EOS (0.513), the best of all."""
    return ScriptedModel(
        {(): {A: 0.6, EOS: 0.3, B: 0.1}, (A,): {C: 0.9, EOS: 0.1}, (B,): {EOS: 1.0}, (A, C): {EOS: 0.95, A: 0.05}},
        default=lambda prefix: {EOS: 0.98, A: 0.01, B: 0.01},
    )


@pytest.mark.parametrize("use_cache", [True, False])
def test_early_stopping_ends_once_k_hypotheses_are_finished(use_cache):
    patient, early = early_finisher(), early_finisher()
    assert beam_search(patient, one_source(), beam_size=2, alpha=0.0, use_cache=use_cache)[0] == [A, C]
    # early stopping stops at step 2 with K = 2 finished ones, the best of which is the empty sentence
    assert beam_search(early, one_source(), beam_size=2, alpha=0.0, use_cache=use_cache, early_stopping=True)[0] == []
    assert early.calls == 2 < patient.calls
    assert patient.log_prob([A, C]) > early.log_prob([]) > early.log_prob([B])


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0, 2.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_finds_the_exact_best_hypothesis(alpha, seed):
    """With a beam wider than the whole search space, beam search is exhaustive: it must return
    argmax_Y log p(Y|x) / lp(Y) over every sequence up to the maximum length (truncated ones included)."""
    model = ScriptedModel(default=random_table(seed))
    max_len = 4  # source of length 1 + max_len_b 3

    def score(tokens: tuple[int, ...], eos: bool) -> float:
        return model.log_prob(list(tokens), eos) / length_penalty(len(tokens) + eos, alpha)

    candidates = [(score(y, True), y) for n in range(max_len) for y in itertools.product([A, B, C], repeat=n)]
    candidates += [(score(y, False), y) for y in itertools.product([A, B, C], repeat=max_len)]
    best = max(candidates)[1]
    assert beam_search(model, one_source(), beam_size=128, alpha=alpha, max_len_b=3)[0] == list(best)


@pytest.mark.parametrize("use_cache", [True, False])
def test_length_penalty_decides_between_short_and_long(use_cache):
    """Short: A EOS, p = 0.6. Long: B^8 EOS, p = 0.4. Which wins depends on α exactly as the formula says."""
    table = {(): {A: 0.6, B: 0.4}, (A,): {EOS: 1.0}}
    table.update({(B,) * n: {B: 1.0} for n in range(1, 8)})
    table[(B,) * 8] = {EOS: 1.0}
    model = ScriptedModel(table, default=lambda prefix: {EOS: 0.98, C: 0.02})
    short, long = [A], [B] * 8
    chosen = set()
    for alpha in (0.0, 0.6, 1.0, 1.5):
        s_short = math.log(0.6) / length_penalty(2, alpha)
        s_long = math.log(0.4) / length_penalty(9, alpha)
        expected = short if s_short > s_long else long
        out = beam_search(model, one_source(), beam_size=2, alpha=alpha, use_cache=use_cache)[0]
        assert out == expected, f"alpha={alpha}"
        chosen.add(tuple(out))
    assert chosen == {tuple(short), tuple(long)}  # the test really exercises both outcomes


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_max_length_is_source_length_plus_b(search):
    never_ends = ScriptedModel(default=lambda prefix: {A: 0.7, B: 0.3})  # EOS has probability 0
    src = torch.tensor([[A, EOS, PAD, PAD], [A, A, A, EOS], [EOS, PAD, PAD, PAD]])
    for b in (0, 1, 5):
        if search == "greedy":
            out = greedy_search(never_ends, src, max_len_b=b)
        else:
            out = beam_search(never_ends, src, beam_size=3, max_len_b=b)
        assert [len(y) for y in out] == [2 + b, 4 + b, 1 + b]
    assert max_output_lengths(never_ends, src, 50).tolist() == [52, 54, 51]


def test_max_length_is_capped_by_the_model_positions():
    model = tiny_transformer(0, max_len=12)
    src = random_sources(6, 16, seed=0, max_words=10)
    for out in (greedy_search(model, src), beam_search(model, src, beam_size=3)):
        assert all(len(y) <= 12 for y in out)


def test_eos_first_gives_empty_outputs():
    stops = ScriptedModel()  # EOS with probability 1 everywhere
    src = torch.tensor([[A, EOS], [EOS, PAD]])
    assert greedy_search(stops, src) == [[], []]
    assert beam_search(stops, src, beam_size=4) == [[], []]


class RowCounter(ScriptedModel):
    """A scripted model that records how many rows each decoder call computes."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows: list[int] = []

    def decode(self, tgt, memory, memory_mask, cache=None):
        self.rows.append(tgt.shape[0])
        return super().decode(tgt, memory, memory_mask, cache)


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_finished_sentences_leave_the_batch(search):
    """Both sentences write 'A' until their limits, 4 and 6 tokens: the last 2 steps compute sentence 1 only."""
    model = RowCounter(default=lambda prefix: {A: 0.9, EOS: 0.1})
    src = torch.tensor([[EOS, PAD, PAD], [A, A, EOS]])  # limits 1 + 3 and 3 + 3
    k = 1 if search == "greedy" else 3
    if search == "greedy":
        out = greedy_search(model, src, max_len_b=3)
    else:
        out = beam_search(model, src, beam_size=k, alpha=0.0, max_len_b=3)
    assert [len(y) for y in out] == [4, 6]  # both run to their limits (1 + 3 and 3 + 3)
    assert model.rows == [2 * k] * 4 + [k] * 2  # after step 4 only sentence 1's rows are computed


@pytest.mark.parametrize("use_cache", [True, False])
def test_grouped_memory_gives_the_same_beams(use_cache):
    """Beam search with the encoder output once per sentence (grouped cross-attention) = repeated K times."""
    model = tiny_transformer(4)
    src = random_sources(12, 16, seed=4)
    grouped = beam_search(model, src, beam_size=4, max_len_b=10, use_cache=use_cache)
    model.grouped_memory = False  # an instance attribute hides the class's True
    try:
        assert beam_search(model, src, beam_size=4, max_len_b=10, use_cache=use_cache) == grouped
    finally:
        del model.grouped_memory


def test_greedy_output_is_the_argmax_under_teacher_forcing():
    """Each greedy token is the argmax given the previous ones; a sentence under its limit ended with EOS."""
    model = tiny_transformer(0)
    src = random_sources(16, 16, seed=0)
    limits = max_output_lengths(model, src, 10).tolist()
    out = greedy_search(model, src, max_len_b=10)
    assert any(len(y) < limit for y, limit in zip(out, limits)), "want some sentences that end with EOS"
    for i, y in enumerate(out):
        assert all(t not in (PAD, BOS, EOS) for t in y)
        ended = len(y) < limits[i]
        tgt = torch.tensor([[BOS, *y]])
        with torch.no_grad():
            logits = model(src[i : i + 1], tgt)[0]  # (1 + |y|, V)
        logits[:, [PAD, BOS]] = -torch.inf
        expected = [*y, EOS] if ended else y
        assert logits.argmax(-1).tolist()[: len(expected)] == expected


# -- real Transformers: equivalences -------------------------------------------------------------------------
def test_cache_and_no_cache_give_identical_outputs():
    model = tiny_transformer(2)
    src = random_sources(10, 16, seed=2)
    assert greedy_search(model, src, max_len_b=12) == greedy_search(model, src, max_len_b=12, use_cache=False)
    with_cache = beam_search(model, src, beam_size=3, max_len_b=12)
    assert with_cache == beam_search(model, src, beam_size=3, max_len_b=12, use_cache=False)


def test_beam_of_one_is_greedy_on_random_models():
    ended_with_eos = 0
    for seed, vocab in itertools.product(range(6), (12, 24)):
        model = tiny_transformer(seed, vocab=vocab)
        src = random_sources(40, vocab, seed=seed)
        greedy = greedy_search(model, src, max_len_b=15)
        assert beam_search(model, src, beam_size=1, alpha=0.6, max_len_b=15) == greedy, f"seed {seed}"
        assert beam_search(model, src, beam_size=1, max_len_b=15, early_stopping=True) == greedy, f"seed {seed}"
        limits = max_output_lengths(model, src, 15).tolist()
        ended_with_eos += sum(len(y) < limit for y, limit in zip(greedy, limits))
    assert ended_with_eos > 40  # EOS decisions were exercised, not only runs to the maximum length


def test_batch_invariance():
    """Decoding a sentence alone or inside a padded batch gives the same result."""
    model = tiny_transformer(0)
    src = random_sources(8, 16, seed=3)
    greedy, beam = greedy_search(model, src, max_len_b=10), beam_search(model, src, beam_size=4, max_len_b=10)
    for i in range(len(src)):
        alone = src[i : i + 1, : int((src[i] != PAD).sum())]  # no padding at all
        assert greedy_search(model, alone, max_len_b=10)[0] == greedy[i]
        assert beam_search(model, alone, beam_size=4, max_len_b=10)[0] == beam[i]


@pytest.fixture(scope="module")
def copier():
    """A tiny Transformer trained for a few seconds to copy its input (peaked, EOS-aware outputs)."""

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        src = random_sources(32, 14, seed=1000 + step, max_words=6)
        words = [[t for t in row if t > EOS] for row in src.tolist()]
        tgt = torch.full((len(words), src.shape[1] + 1), PAD, dtype=torch.long)
        for i, w in enumerate(words):
            tgt[i, : len(w) + 2] = torch.tensor([BOS, *w, EOS])
        return src, tgt

    return train_copier(14, batch)


def test_beam_of_one_is_greedy_on_a_trained_model(copier):
    src = random_sources(60, 14, seed=7, max_words=6)
    greedy = greedy_search(copier, src)
    assert beam_search(copier, src, beam_size=1) == greedy
    # it did learn something: most outputs have the right length, many are exact copies
    words = [[t for t in row if t > EOS] for row in src.tolist()]
    assert sum(len(y) == len(w) for y, w in zip(greedy, words)) > len(words) // 2
    beam = beam_search(copier, src, beam_size=4)
    assert sum(y == w for y, w in zip(beam, words)) > len(words) // 2


# -- interface details ---------------------------------------------------------------------------------------
def test_training_mode_is_restored_and_no_grad_kept():
    model = tiny_transformer(0)
    model.train()
    greedy_search(model, random_sources(2, 16, seed=0), max_len_b=2)
    beam_search(model, random_sources(2, 16, seed=0), beam_size=2, max_len_b=2)
    assert model.training


def test_bad_arguments_are_refused():
    model = ScriptedModel()
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, one_source(), beam_size=0)
    with pytest.raises(ValueError, match=r"src must be token ids of shape \(B, length\)"):
        greedy_search(model, torch.tensor([A, EOS]))
    with pytest.raises(TypeError, match="integer"):
        beam_search(model, one_source().float())
    with pytest.raises(ValueError, match="max_len_b"):
        greedy_search(model, one_source(), max_len_b=-1)
    assert greedy_search(model, torch.zeros(0, 3, dtype=torch.long)) == []


@pytest.mark.parametrize("beam_size", [1, 3])
def test_decode_corpus_sorts_into_batches_and_keeps_input_order(beam_size):
    from qkv.decode import decode_corpus

    model = tiny_transformer(4)
    rng = torch.Generator().manual_seed(5)
    lengths = torch.randint(1, 9, (11,), generator=rng).tolist()
    sources = [torch.randint(3, 16, (n,), generator=rng).tolist() for n in lengths]
    got = decode_corpus(model, sources, beam_size=beam_size, max_len_b=6, batch_size=4)
    search = greedy_search if beam_size == 1 else lambda m, s, **kw: beam_search(m, s, beam_size=beam_size, **kw)
    alone = [search(model, torch.tensor([[*ids, EOS]]), max_len_b=6)[0] for ids in sources]
    assert got == alone
