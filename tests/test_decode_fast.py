"""The decoding fast paths (issue 17): the two-stage row argmax / top-k equal torch's, searches over a large
vocabulary give the same tokens as with torch's own ``max`` / ``topk``, and the KV cache reorder keeps the
keys and values it must."""

from __future__ import annotations

import pytest
import torch

from qkv import Transformer, TransformerConfig
from qkv.data.special import EOS
from qkv.decode import beam_search, greedy_search
from qkv.decode import topk as fast
from qkv.nn.attention import KVCache


def scores(rows: int, vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, vocab, generator=g).log_softmax(-1)  # (B, V)
    x[:, :2] = -torch.inf  # PAD and BOS, as the searches set them
    return x


@pytest.mark.parametrize("vocab", [1024, 5000, 8000, 8191])
def test_row_argmax_and_topk_equal_torch(vocab):
    x = scores(37, vocab, seed=vocab)
    assert torch.equal(fast.row_argmax(x), x.max(dim=-1).indices)
    for k in (1, 4, 10):
        values, indices = fast.row_topk(x, k)
        expected = x.topk(k, dim=-1)
        assert torch.equal(values, expected.values)
        assert torch.equal(indices, expected.indices)


def test_row_argmax_takes_the_first_maximum_on_ties():
    x = torch.full((3, 3000), -5.0)
    x[0, [70, 2000]] = 1.0  # the same maximum in two chunks
    x[1, [130, 131]] = 2.0  # twice in one chunk
    x[2, 2999] = 0.0  # in the padded last chunk
    assert fast.row_argmax(x).tolist() == [70, 130, 2999]
    assert fast.row_argmax(x).tolist() == x.max(dim=-1).indices.tolist()


def test_small_vocabularies_and_wide_k_use_torch():
    x = scores(4, 100, seed=0)
    assert torch.equal(fast.row_argmax(x), x.max(dim=-1).indices)
    assert torch.equal(fast.row_topk(x, 7)[1], x.topk(7, dim=-1).indices)
    wide = scores(4, 2000, seed=1)
    assert torch.equal(fast.row_topk(wide, 64)[1], wide.topk(64, dim=-1).indices)


def random_model(vocab: int, seed: int) -> Transformer:
    torch.manual_seed(seed)
    cfg = TransformerConfig.preset("tiny", src_vocab_size=vocab, tgt_vocab_size=vocab, max_len=64)
    return Transformer(cfg).eval()


def sources(n: int, vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab, (n, 6), generator=g)
    src[:, -1] = EOS
    src[: n // 2, 3:] = 0  # some shorter sentences (PAD, then nothing)
    src[: n // 2, 3] = EOS
    return src


def test_searches_over_a_large_vocabulary_match_torch_max_and_topk(monkeypatch):
    model = random_model(3000, seed=3)
    src = sources(12, 3000, seed=4)
    greedy = greedy_search(model, src, max_len_b=8)
    beam = beam_search(model, src, beam_size=4, max_len_b=8)
    monkeypatch.setattr(fast, "MIN_VOCAB", 10**9)  # the reference: torch's own max / topk everywhere
    assert greedy_search(model, src, max_len_b=8) == greedy
    assert beam_search(model, src, beam_size=4, max_len_b=8) == beam
    assert beam_search(model, src, beam_size=1, max_len_b=8) == greedy


def test_kv_cache_reorder_keeps_the_filled_positions():
    cache = KVCache()
    steps = [(torch.randn(4, 2, 1, 3), torch.randn(4, 2, 1, 3)) for _ in range(5)]
    for k, v in steps:
        cache.append(k, v)
    index = torch.tensor([3, 3, 0])
    expected_k = torch.cat([k for k, _ in steps], dim=2)[index]  # (3, 2, 5, 3)
    expected_v = torch.cat([v for _, v in steps], dim=2)[index]
    cache.reorder(index)
    assert torch.equal(cache.k, expected_k) and torch.equal(cache.v, expected_v)
    k, v = torch.randn(3, 2, 1, 3), torch.randn(3, 2, 1, 3)
    all_k, all_v = cache.append(k, v)  # still room in the buffers: a write, not a copy
    assert torch.equal(all_k, torch.cat([expected_k, k], dim=2)) and torch.equal(all_v, torch.cat([expected_v, v], 2))
