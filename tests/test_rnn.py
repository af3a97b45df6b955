"""The RNN baselines (qkv.models.rnn): config, Transformer-like interface, padding, caching, learning."""

from __future__ import annotations

import pytest
import torch

import qkv.decode
from qkv.config import ConfigError
from qkv.models.rnn import (
    AttentionGRUEncoderDecoder,
    LSTMEncoderDecoder,
    RNNCache,
    RNNConfig,
    build_rnn,
    reverse_padded,
    source_lengths,
)

PAD, BOS, EOS = 0, 1, 2
ARCHS = ["rnn", "rnn-attention"]


def small(arch: str, vocab: int = 30, paper_init: bool = False, **overrides) -> torch.nn.Module:
    """A small model. Unless ``paper_init``, every weight (the padding embedding too) is redrawn from
    U(-0.5, 0.5): the papers' tiny initial weights would make every logit difference tiny, and a non-zero
    padding embedding makes any leak of padding into the results visible."""
    cfg = dict(d_embed=16, d_hidden=24, n_layers=2, dropout=0.0)
    cfg.update(overrides)
    model = build_rnn(RNNConfig(arch, src_vocab_size=vocab, tgt_vocab_size=vocab, **cfg))
    if not paper_init:
        with torch.no_grad():
            for p in model.parameters():
                p.uniform_(-0.5, 0.5)
    return model.eval()


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    src = torch.tensor([[5, 6, 7, 8, EOS], [9, 10, EOS, PAD, PAD], [11, EOS, PAD, PAD, PAD]])
    tgt = torch.tensor([[BOS, 12, 13, 14], [BOS, 15, PAD, PAD], [BOS, 16, 17, PAD]])
    return src, tgt


# -- config --------------------------------------------------------------------------------------------------
def test_config_round_trip_and_validation():
    cfg = RNNConfig("rnn", src_vocab_size=40, tgt_vocab_size=50, d_hidden=8)
    assert RNNConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.reverses_source and not RNNConfig("rnn-attention", 40, 50).reverses_source
    assert cfg.replace(n_layers=3).n_layers == 3
    with pytest.raises(ConfigError, match="arch"):
        RNNConfig("lstm", 10, 10)
    with pytest.raises(ConfigError, match="d_hidden"):
        RNNConfig("rnn", 10, 10, d_hidden=0)
    with pytest.raises(ConfigError, match="dropout"):
        RNNConfig("rnn", 10, 10, dropout=1.0)
    with pytest.raises(ConfigError, match="pad_id"):
        RNNConfig("rnn", 10, 10, pad_id=10)
    with pytest.raises(ConfigError, match="reverse_source"):
        RNNConfig("rnn-attention", 10, 10, reverse_source=True)
    with pytest.raises(ConfigError, match="init"):
        RNNConfig("rnn", 10, 10, init="xavier")
    with pytest.raises(ConfigError, match="unknown RNNConfig option"):
        RNNConfig.from_dict({**cfg.to_dict(), "d_model": 4})
    with pytest.raises(ConfigError, match="arch='rnn'"):
        LSTMEncoderDecoder(RNNConfig("rnn-attention", 10, 10))
    assert isinstance(build_rnn(cfg.to_dict()), LSTMEncoderDecoder)
    assert isinstance(build_rnn(cfg.replace(arch="rnn-attention")), AttentionGRUEncoderDecoder)


def test_source_helpers():
    src = torch.tensor([[5, 6, 7, PAD], [8, 9, PAD, PAD]])
    lengths = source_lengths(src, PAD)
    assert lengths.tolist() == [3, 2]
    assert reverse_padded(src, lengths).tolist() == [[7, 6, 5, PAD], [9, 8, PAD, PAD]]
    with pytest.raises(ValueError, match=r"right-padded.*rows \[1\]"):
        source_lengths(torch.tensor([[5, 6], [PAD, 7]]), PAD)


# -- interface and shapes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_and_interface(arch):
    model = small(arch)
    src, tgt = padded_batch()
    mask = model.src_mask(src)
    assert mask.dtype == torch.bool and mask.shape == (3, 1, 1, 5)
    memory = model.encode(src, mask)
    assert memory.shape == ((3, 1, 2 * 2 * 24) if arch == "rnn" else (3, 5, 2 * 24))
    assert model.decode(tgt, memory, mask).shape == (3, 4, 30)
    logits, maps = model(src, tgt, return_attention=True)
    assert logits.shape == (3, 4, 30)
    assert torch.allclose(logits, model(src, tgt), atol=1e-6)
    assert maps.encoder_self == [] and maps.decoder_self == []
    if arch == "rnn":
        assert maps.cross == []
    else:
        assert len(maps.cross) == 1 and maps.cross[0].shape == (3, 1, 4, 5)
    assert model.num_parameters() == sum(p.numel() for p in model.parameters()) > 0
    assert model.log_probs(logits).exp().sum(-1).allclose(torch.ones(3, 4))


@pytest.mark.parametrize("arch", ARCHS)
def test_bad_inputs_get_clear_errors(arch):
    model = small(arch)
    with pytest.raises(ValueError, match=r"src must be token ids of shape \(B, length\)"):
        model.encode(torch.tensor([5, 6, 7]))
    with pytest.raises(TypeError, match="integer"):
        model.encode(torch.ones(1, 3))
    with pytest.raises(ValueError, match="memory must be"):
        model.decode(torch.tensor([[BOS]]), torch.zeros(1, 4, 7))


# -- padding never changes results ---------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_padding_does_not_change_results(arch):
    model = small(arch)
    src, tgt = padded_batch()
    batched = model(src, tgt)  # (3, T, V)
    for i in range(3):
        s_len = int((src[i] != PAD).sum())
        t_len = int((tgt[i] != PAD).sum())
        alone = model(src[i : i + 1, :s_len], tgt[i : i + 1, :t_len])
        torch.testing.assert_close(batched[i : i + 1, :t_len], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_source_content_matters(arch):
    """A sanity check that the padding test could fail: changing a real source token changes the logits."""
    model = small(arch)
    src, tgt = padded_batch()
    changed = src.clone()
    changed[1, 0] = 20
    diff = (model(src, tgt) - model(changed, tgt)).abs().amax(dim=(1, 2))
    assert diff[1] > 1e-3 and diff[0] == 0 and diff[2] == 0


def test_alignment_sums_to_one_over_real_tokens_and_is_zero_on_padding():
    model = small("rnn-attention")
    src, tgt = padded_batch()
    _, maps = model(src, tgt, return_attention=True)
    alpha = maps.cross[0][:, 0]  # (B, T, S)
    real = (src != PAD)[:, None, :].expand_as(alpha)
    assert torch.all(alpha[~real] == 0)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(3, 4))
    assert torch.all(alpha[real] > 0)


# -- incremental decoding ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_incremental_decode_equals_full_decode(arch):
    model = small(arch)
    src, tgt = padded_batch()
    mask = model.src_mask(src)
    memory = model.encode(src, mask)
    full, _, full_cross = model.decode(tgt, memory, mask, return_attention=True)
    cache = model.new_cache()
    assert isinstance(cache, RNNCache) and cache.offset == 0
    steps, crosses = [], []
    for chunk in (tgt[:, :1], tgt[:, 1:3], tgt[:, 3:]):  # one token, then two, then one
        logits, _, cross = model.decode(chunk, memory, mask, cache=cache, return_attention=True)
        steps.append(logits)
        crosses.append(cross)
    assert cache.offset == tgt.shape[1]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    if arch == "rnn-attention":
        torch.testing.assert_close(torch.cat([c[0] for c in crosses], dim=2), full_cross[0])


@pytest.mark.parametrize("arch", ARCHS)
def test_cache_reorder_follows_beam_rows(arch):
    """Beam search expands and reorders memory with index_select(0, …) and the cache with reorder()."""
    model = small(arch)
    src, tgt = padded_batch()
    mask = model.src_mask(src)
    memory = model.encode(src, mask)
    expected = model.decode(tgt, memory, mask)  # (3, T, V)

    index = torch.tensor([2, 0, 0, 1])
    cache = model.new_cache()
    cache.reorder(torch.arange(3))  # reordering an empty cache is a no-op, not an error
    model.decode(tgt[:, :2], memory, mask, cache=cache)
    cache.reorder(index)
    memory, mask = memory.index_select(0, index), mask.index_select(0, index)
    rest = model.decode(tgt[index, 2:], memory, mask, cache=cache)
    torch.testing.assert_close(rest, expected[index, 2:], atol=1e-5, rtol=1e-5)


# -- gradients -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_gradients_reach_all_parameters(arch):
    model = small(arch, dropout=0.1).train()
    src, tgt = padded_batch()
    logits = model(src, tgt)
    target = tgt.roll(-1, 1).flatten()
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), target, ignore_index=PAD).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


# -- learning ------------------------------------------------------------------------------------------------
def reverse_task(n: int, generator: torch.Generator, vocab: int = 14, max_len: int = 7):
    """Random symbol strings (ids 4..vocab-1) and their reversals, as collated (src+EOS, BOS+y, y+EOS)."""
    lengths = torch.randint(3, max_len + 1, (n,), generator=generator)
    src = torch.full((n, max_len + 1), PAD)
    tgt_in = torch.full((n, max_len + 1), PAD)
    tgt_out = torch.full((n, max_len + 1), PAD)
    for i, length in enumerate(lengths.tolist()):
        x = torch.randint(4, vocab, (length,), generator=generator)
        src[i, :length], src[i, length] = x, EOS
        tgt_in[i, 0], tgt_in[i, 1 : length + 1] = BOS, x.flip(0)
        tgt_out[i, :length], tgt_out[i, length] = x.flip(0), EOS
    return src, tgt_in, tgt_out


def greedy(model, src: torch.Tensor, steps: int) -> torch.Tensor:
    """Minimal cached greedy decoding through the shared interface (qkv.decode does the real thing)."""
    mask = model.src_mask(src)
    memory = model.encode(src, mask)
    cache = model.new_cache()
    token = torch.full((src.shape[0], 1), BOS)
    out = []
    for _ in range(steps):
        token = model.decode(token, memory, mask, cache=cache)[:, -1:].argmax(-1)  # (B, 1)
        out.append(token)
    return torch.cat(out, dim=1)


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "min_accuracy"), [("rnn-attention", 0.95), ("rnn", 0.6)])
def test_tiny_model_learns_to_reverse(arch, min_accuracy):
    """Reverse 3-7 symbols: 100 Adam steps (seconds). The attention model learns it almost perfectly; the
    fixed-size LSTM state gets much of the way. (``init="pytorch"``: the papers' tiny initial weights need
    thousands of steps.)"""
    g = torch.Generator().manual_seed(0)
    sizes = dict(d_embed=32, d_hidden=64, n_layers=1)
    model = small(arch, vocab=14, paper_init=True, init="pytorch", **sizes).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        src, tgt_in, tgt_out = reverse_task(64, g)
        loss = torch.nn.functional.cross_entropy(
            model(src, tgt_in).flatten(0, 1), tgt_out.flatten(), ignore_index=PAD
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    src, _, tgt_out = reverse_task(200, g)
    with torch.no_grad():
        hyp = greedy(model, src, tgt_out.shape[1])
        teacher = model(src, torch.cat([torch.full((200, 1), BOS), tgt_out[:, :-1]], 1)).argmax(-1)
    real = tgt_out != PAD
    token_accuracy = (teacher == tgt_out)[real].float().mean().item()
    exact = ((hyp == tgt_out) | ~real).all(dim=1).float().mean().item()
    assert token_accuracy >= min_accuracy, f"{arch}: token accuracy {token_accuracy:.2f}, exact {exact:.2f}"
    if arch == "rnn-attention":
        assert exact >= 0.8, f"exact-match accuracy {exact:.2f}"


def test_shared_decoding_runs_on_the_baselines():
    """qkv.decode (written against qkv.Transformer) works unchanged on both baselines."""
    if not hasattr(qkv.decode, "beam_search"):
        pytest.skip("qkv.decode.beam_search is not there yet")
    src, _ = padded_batch()
    for arch in ARCHS:
        model = small(arch)
        greedy_out = qkv.decode.greedy_search(model, src, max_len_b=3)
        assert qkv.decode.beam_search(model, src, beam_size=1, max_len_b=3) == greedy_out
        assert qkv.decode.greedy_search(model, src, max_len_b=3, use_cache=False) == greedy_out
        beams = qkv.decode.beam_search(model, src, beam_size=3, max_len_b=3)
        assert len(beams) == 3 and all(isinstance(t, int) for row in beams for t in row)


# -- the other direction: bidirectional LSTM, one-way GRU + attention (flagged options) ---------------------
FLIPPED = [("rnn", True), ("rnn-attention", False)]


def test_bidirectional_config_resolves_each_papers_choice():
    assert not RNNConfig("rnn", 10, 10).bidirectional_encoder and RNNConfig("rnn", 10, 10).directions == 1
    assert RNNConfig("rnn-attention", 10, 10).bidirectional_encoder
    bi = RNNConfig("rnn", 10, 10, bidirectional=True)
    assert bi.directions == 2 and not bi.reverses_source  # a bidirectional encoder reads both ways anyway
    assert RNNConfig.from_dict(bi.to_dict()) == bi
    old = {k: v for k, v in RNNConfig("rnn", 10, 10).to_dict().items() if k != "bidirectional"}
    assert RNNConfig.from_dict(old) == RNNConfig("rnn", 10, 10)  # configs saved before the option
    with pytest.raises(ConfigError, match="bidirectional"):
        RNNConfig("rnn", 10, 10, bidirectional="yes")
    with pytest.raises(ConfigError, match="reverse_source=True needs a one-way encoder"):
        RNNConfig("rnn", 10, 10, bidirectional=True, reverse_source=True)


@pytest.mark.parametrize("arch, bidirectional", FLIPPED)
def test_flipped_direction_shapes_and_state(arch, bidirectional):
    model = small(arch, bidirectional=bidirectional)
    src, tgt = padded_batch()
    mask = model.src_mask(src)
    memory = model.encode(src, mask)
    if arch == "rnn":  # both directions' final states, concatenated per layer: a 2H-wide decoder
        assert model.encoder.bidirectional and memory.shape == (3, 1, 2 * 2 * 48)
        h0, c0 = model.initial_state(memory)
        assert h0.shape == c0.shape == (2, 3, 48) and model.decoder.hidden_size == 48
        _, (h, _) = model.encoder(model.src_embed(src[2:, :2]))  # row 2 alone: 2 real tokens, no padding
        torch.testing.assert_close(h0[:, 2, :24], h[0::2, 0])  # → of each layer
        torch.testing.assert_close(h0[:, 2, 24:], h[1::2, 0])  # ← of each layer
    else:  # one-way annotations; s_0 from the state after the last real token
        assert not model.encoder.bidirectional and memory.shape == (3, 5, 24)
        assert (memory[1, 3:] == 0).all() and (memory[1, 2] != 0).any()
    logits, maps = model(src, tgt, return_attention=True)
    assert logits.shape == (3, 4, 30)
    assert len(maps.cross) == (0 if arch == "rnn" else 1)


@pytest.mark.parametrize("arch, bidirectional", FLIPPED)
def test_flipped_direction_padding_does_not_change_results(arch, bidirectional):
    model = small(arch, bidirectional=bidirectional)
    src, tgt = padded_batch()
    batched = model(src, tgt)
    for i in range(3):
        s_len, t_len = int((src[i] != PAD).sum()), int((tgt[i] != PAD).sum())
        alone = model(src[i : i + 1, :s_len], tgt[i : i + 1, :t_len])
        torch.testing.assert_close(batched[i : i + 1, :t_len], alone, atol=1e-5, rtol=1e-5)
    changed = src.clone()
    changed[1, 0] = 20
    assert (model(src, tgt) - model(changed, tgt))[1].abs().max() > 1e-3


@pytest.mark.parametrize("arch, bidirectional", FLIPPED)
def test_flipped_direction_incremental_equals_full_and_beam_search_runs(arch, bidirectional):
    model = small(arch, bidirectional=bidirectional)
    src, tgt = padded_batch()
    mask = model.src_mask(src)
    memory = model.encode(src, mask)
    full = model.decode(tgt, memory, mask)
    cache = model.new_cache()
    steps = [model.decode(tgt[:, i : i + 1], memory, mask, cache=cache) for i in range(tgt.shape[1])]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    greedy_out = qkv.decode.greedy_search(model, src, max_len_b=3)
    assert qkv.decode.beam_search(model, src, beam_size=1, max_len_b=3) == greedy_out
    beams = qkv.decode.beam_search(model, src, beam_size=3, max_len_b=3)
    assert len(beams) == 3 and all(isinstance(t, int) for row in beams for t in row)


@pytest.mark.parametrize("arch, bidirectional", FLIPPED)
def test_flipped_direction_gradients_reach_all_parameters(arch, bidirectional):
    model = small(arch, bidirectional=bidirectional, dropout=0.1).train()
    src, tgt = padded_batch()
    logits = model(src, tgt)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt.roll(-1, 1).flatten(), ignore_index=PAD).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
