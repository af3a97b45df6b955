"""Token-budget batching (§5.1): collate, TokenBudgetSampler budgets, coverage, padding, resume, sharding."""

from __future__ import annotations

import gzip
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qkv.data.batching import BOS, EOS, PAD, TokenBudgetSampler, collate


def multi30k_like_lengths(n: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Lengths shaped like Multi30k subwords: mostly 8-20 tokens, a long tail, target follows source."""
    rng = random.Random(seed)
    src, tgt = [], []
    for _ in range(n):
        s = max(2, min(60, int(rng.lognormvariate(2.6, 0.35))))
        t = max(2, min(60, int(s * rng.uniform(0.8, 1.25))))
        src.append(s)
        tgt.append(t)
    return src, tgt


def test_collate_adds_bos_eos_and_pads():
    batch = collate([([5, 6, 7], [8, 9]), ([5], [8, 9, 10])])
    assert batch.src.tolist() == [[5, 6, 7, EOS], [5, EOS, PAD, PAD]]
    assert batch.tgt_in.tolist() == [[BOS, 8, 9, PAD], [BOS, 8, 9, 10]]
    assert batch.tgt_out.tolist() == [[8, 9, EOS, PAD], [8, 9, 10, EOS]]
    assert batch.n_tokens == int((batch.tgt_out != PAD).sum()) == 7
    assert batch.src.dtype == torch.long and len(batch) == 2
    moved = batch.to("cpu")
    assert torch.equal(moved.tgt_out, batch.tgt_out) and moved.n_tokens == 7


def test_collate_rejects_empty():
    with pytest.raises(ValueError, match="at least one"):
        collate([])


def test_every_example_once_per_epoch_and_budget_respected():
    src, tgt = multi30k_like_lengths(3000)
    sampler = TokenBudgetSampler(src, tgt, max_tokens=1024, seed=3)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(3000))
        for b in batches:
            assert len(b) * max(max(src[i], tgt[i]) for i in b) <= 1024


def test_batch_order_depends_on_seed_and_epoch_only():
    src, tgt = multi30k_like_lengths(500)
    a = TokenBudgetSampler(src, tgt, max_tokens=256, seed=1)
    b = TokenBudgetSampler(src, tgt, max_tokens=256, seed=1)
    c = TokenBudgetSampler(src, tgt, max_tokens=256, seed=2)
    epoch0 = list(a)
    assert epoch0 == list(b)
    assert epoch0 != list(c)
    a.set_epoch(1)
    assert list(a) != epoch0
    assert len(a) == len(c)  # the number of batches never changes


def test_unshuffled_batches_are_length_sorted():
    src, tgt = multi30k_like_lengths(400)
    sampler = TokenBudgetSampler(src, tgt, max_tokens=300, shuffle=False)
    flat = [i for b in sampler for i in b]
    keys = [(tgt[i], src[i]) for i in flat]
    assert keys == sorted(keys)


def test_padding_fraction_is_low_on_multi30k_like_lengths():
    src, tgt = multi30k_like_lengths(29000)
    sampler = TokenBudgetSampler(src, tgt, max_tokens=4096, seed=0)
    assert sampler.padding_fraction() < 0.10
    # versus random batches of the same sizes: sorting is what keeps padding low
    rng = random.Random(0)
    order = list(range(len(src)))
    rng.shuffle(order)
    sizes = [len(b) for b in sampler.global_batches(0)]
    real = padded = 0
    start = 0
    for size in sizes:
        b = order[start : start + size]
        start += size
        real += sum(src[i] for i in b) + sum(tgt[i] for i in b)
        padded += len(b) * (max(src[i] for i in b) + max(tgt[i] for i in b))
    assert 1 - real / padded > 2 * sampler.padding_fraction()


def test_padding_fraction_on_real_multi30k(shared_data):
    def lengths(path):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return [len(line.split()) + 1 for line in f]

    src = lengths(shared_data / "multi30k" / "train.de.gz")
    tgt = lengths(shared_data / "multi30k" / "train.en.gz")
    sampler = TokenBudgetSampler(src, tgt, max_tokens=4096)
    assert sampler.padding_fraction() < 0.10


def test_resume_mid_epoch_continues_with_the_next_batch():
    src, tgt = multi30k_like_lengths(800)
    full = TokenBudgetSampler(src, tgt, max_tokens=200, seed=7)
    full.set_epoch(2)
    expected = list(full)
    first = TokenBudgetSampler(src, tgt, max_tokens=200, seed=7)
    first.set_epoch(2)
    it = iter(first)
    head = [next(it) for _ in range(5)]
    state = first.state_dict()
    second = TokenBudgetSampler(src, tgt, max_tokens=200, seed=7)
    second.load_state_dict(state)
    assert head + list(second) == expected
    assert list(second) == []  # the epoch is used up


def test_load_state_dict_refuses_a_different_dataset():
    src, tgt = multi30k_like_lengths(800)
    state = TokenBudgetSampler(src, tgt, max_tokens=200).state_dict()
    other = TokenBudgetSampler(src, tgt, max_tokens=400)
    with pytest.raises(ValueError, match="batches per epoch"):
        other.load_state_dict(state)


def test_shards_partition_each_global_batch():
    src, tgt = multi30k_like_lengths(1000)
    ranks = [TokenBudgetSampler(src, tgt, max_tokens=512, seed=4, rank=r, world_size=2) for r in range(2)]
    single = TokenBudgetSampler(src, tgt, max_tokens=512, seed=4)
    shards = [list(s) for s in ranks]
    assert len(shards[0]) == len(shards[1]) == len(single)
    for global_batch, a, b in zip(single, *shards):
        if len(global_batch) == 1:  # a lone long sentence is repeated on both ranks
            assert a == b == global_batch
            continue
        assert sorted(a + b) == sorted(global_batch)
        assert len(a) - len(b) in (0, 1)  # each rank pads to about max_tokens / 2


def test_tiny_global_batch_is_repeated_to_fill_every_rank():
    sampler = TokenBudgetSampler([50, 3, 3], [50, 3, 3], max_tokens=60, shuffle=False, rank=1, world_size=2)
    shards = list(sampler)
    assert len(shards) == 2 and all(len(s) >= 1 for s in shards)
    assert shards[1] == [0]  # the lone long sentence, repeated on rank 1


def test_too_long_example_is_a_clear_error():
    with pytest.raises(ValueError, match=r"example 1 has 90 tokens .* max_tokens=64"):
        TokenBudgetSampler([5, 90], [5, 7], max_tokens=64)
    with pytest.raises(ValueError, match="differ in size"):
        TokenBudgetSampler([5, 6], [5], max_tokens=64)


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.tuples(st.integers(1, 30), st.integers(1, 30)), min_size=1, max_size=80),
    max_tokens=st.integers(30, 200),
    world_size=st.integers(1, 3),
    seed=st.integers(0, 5),
)
def test_property_coverage_and_budget(lengths, max_tokens, world_size, seed):
    src = [s for s, _ in lengths]
    tgt = [t for _, t in lengths]
    samplers = [
        TokenBudgetSampler(src, tgt, max_tokens, seed=seed, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    single = TokenBudgetSampler(src, tgt, max_tokens, seed=seed)
    globals_ = list(single)
    assert sorted(i for b in globals_ for i in b) == list(range(len(src)))
    for b in globals_:
        assert len(b) * max(max(src[i], tgt[i]) for i in b) <= max_tokens
    per_rank = [list(s) for s in samplers]
    assert all(len(p) == len(globals_) for p in per_rank)
    for k, b in enumerate(globals_):
        assert set().union(*(set(p[k]) for p in per_rank)) == set(b)
