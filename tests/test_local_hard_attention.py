"""Local (windowed) and hard attention (issue 16): the local mask, the hard weights and their
straight-through gradient, and both options through the Transformer (incremental == full, window >= length
== global, old configs unchanged)."""

from __future__ import annotations

import pytest
import torch

from qkv.config import ConfigError
from qkv.models.transformer import Transformer, TransformerConfig
from qkv.nn import MaskError, MultiHeadAttention, causal_mask, combine_masks, local_mask, padding_mask
from qkv.nn.attention import hard_attention_weights, scaled_dot_product_attention


# -- local_mask ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [1, 4, 7])
@pytest.mark.parametrize("window", [0, 1, 2, 10])
def test_local_mask_is_a_band(t, window):
    mask = local_mask(t, window=window)
    assert mask.dtype == torch.bool and mask.shape == (1, 1, t, t)
    for i in range(t):
        for j in range(t):
            assert bool(mask[0, 0, i, j]) == (abs(i - j) <= window)


def test_local_mask_with_cached_keys_is_aligned_bottom_right():
    full = local_mask(6, window=2)
    assert torch.equal(local_mask(2, 6, window=2), full[:, :, 4:])  # the last two query rows
    assert torch.equal(local_mask(1, 6, window=2)[0, 0, 0].int(), torch.tensor([0, 0, 0, 1, 1, 1]))


def test_local_mask_refuses_bad_arguments():
    with pytest.raises(MaskError, match="t_k >= t_q"):
        local_mask(3, 2, window=1)
    for bad in (-1, 1.5, True, None):
        with pytest.raises(MaskError, match="window must be an int >= 0"):
            local_mask(3, window=bad)


def test_local_mask_combines_with_causal_and_padding():
    tokens = torch.tensor([[5, 6, 7, 8, 0], [5, 6, 0, 0, 0]])
    mask = combine_masks(padding_mask(tokens, 0), causal_mask(5), local_mask(5, window=1))
    assert mask.shape == (2, 1, 5, 5)
    for b, length in enumerate((4, 2)):
        for i in range(5):
            for j in range(5):
                assert bool(mask[b, 0, i, j]) == (j < length and i - 1 <= j <= i)


def test_local_window_at_least_the_length_is_global():
    q = k = v = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    assert local_mask(6, window=5).all()
    out_local, w_local = scaled_dot_product_attention(q, k, v, local_mask(6, window=5))
    out_global, w_global = scaled_dot_product_attention(q, k, v)
    assert torch.equal(w_local, w_global) and torch.allclose(out_local, out_global)


# -- hard attention ------------------------------------------------------------------------------------------------
def test_hard_weights_are_one_hot_on_the_best_allowed_key():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 4) for _ in range(3))
    mask = combine_masks(padding_mask(torch.tensor([[5, 6, 7, 0, 0], [5, 6, 7, 8, 9]]), 0), causal_mask(5))
    soft_out, soft = scaled_dot_product_attention(q, k, v, mask)
    hard_out, hard = scaled_dot_product_attention(q, k, v, mask, hard=True)
    assert set(hard.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(hard.sum(-1), torch.ones_like(hard.sum(-1)))  # causal: every row has a key
    assert not (hard.bool() & ~mask).any()  # a masked key is never chosen
    assert torch.equal(hard.argmax(-1), soft.argmax(-1))
    picked = torch.gather(v, -2, hard.argmax(-1, keepdim=True).expand(-1, -1, -1, 4))  # the chosen values
    assert torch.allclose(hard_out, picked)
    assert not torch.allclose(hard_out, soft_out)


def test_hard_fully_masked_rows_are_zero():
    q = k = v = torch.randn(1, 1, 3, 4)
    mask = torch.tensor([[True, False, True], [False, False, False], [False, True, False]])
    out, w = scaled_dot_product_attention(q, k, v, mask, hard=True)
    assert torch.equal(w[0, 0, 1], torch.zeros(3)) and torch.equal(out[0, 0, 1], torch.zeros(4))
    assert not torch.isnan(out).any()
    assert hard_attention_weights(torch.zeros(2, 3)).eq(0).all()


def test_straight_through_gradient_is_the_softmax_gradient():
    torch.manual_seed(1)
    q, k, v = (torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = causal_mask(4)
    _, soft = scaled_dot_product_attention(q, k, v, mask)
    _, hard = scaled_dot_product_attention(q, k, v, mask, hard=True)
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    g = torch.randn_like(soft)
    grads_soft = torch.autograd.grad((soft * g).sum(), (q, k))
    grads_hard = torch.autograd.grad((hard * g).sum(), (q, k))
    for gs, gh in zip(grads_soft, grads_hard):
        assert gh.abs().sum() > 0
        assert torch.allclose(gs, gh)  # backward through the hard weights = backward through the softmax
    out, _ = scaled_dot_product_attention(q, k, v, mask, hard=True)
    out.sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (q, k, v))


def test_hard_equals_soft_when_the_softmax_is_already_one_hot():
    torch.manual_seed(2)
    k = torch.randn(1, 1, 5, 8, dtype=torch.float64)
    v = torch.randn(1, 1, 5, 3, dtype=torch.float64)
    q = 200.0 * k[:, :, [3, 0, 4]]  # each query aligned with one key, scores far apart
    soft_out, soft = scaled_dot_product_attention(q, k, v)
    hard_out, hard = scaled_dot_product_attention(q, k, v, hard=True)
    assert soft.max(-1).values.min() > 1 - 1e-9
    assert torch.allclose(soft, hard, atol=1e-9) and torch.allclose(soft_out, hard_out, atol=1e-8)


@pytest.mark.parametrize("is_causal", [False, True])
def test_hard_explicit_and_fused_paths_agree(is_causal):
    torch.manual_seed(3)
    q, k, v = (torch.randn(2, 2, 5, 4) for _ in range(3))
    mask = padding_mask(torch.tensor([[5, 6, 7, 0, 0], [5, 6, 7, 8, 9]]), 0)
    explicit, w = scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal, hard=True)
    fused, none = scaled_dot_product_attention(
        q, k, v, mask, is_causal=is_causal, need_weights=False, hard=True
    )
    assert none is None and w is not None
    assert torch.equal(explicit, fused)


def test_multi_head_attention_hard_option():
    with pytest.raises(ValueError, match="attention must be one of"):
        MultiHeadAttention(8, 2, attention="sparse")
    mha = MultiHeadAttention(8, 2, attention="hard")
    x = torch.randn(2, 5, 8)
    out, w = mha(x, x, x, need_weights=True)
    out_fused, _ = mha(x, x, x)
    assert set(w.unique().tolist()) <= {0.0, 1.0} and torch.allclose(out, out_fused, atol=1e-6)


# -- through the Transformer -----------------------------------------------------------------------------------------
def tiny(**overrides) -> Transformer:
    cfg = TransformerConfig.preset("tiny", src_vocab_size=30, tgt_vocab_size=30, **overrides)
    torch.manual_seed(0)
    return Transformer(cfg).eval()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    src = torch.tensor([[5, 6, 7, 8, 9, 10, 2], [11, 12, 13, 2, 0, 0, 0]])
    tgt = torch.tensor([[1, 14, 15, 16, 17, 18], [1, 19, 20, 21, 0, 0]])
    return src, tgt


def test_config_validates_and_defaults_are_the_paper():
    cfg = TransformerConfig.preset("tiny", src_vocab_size=30, tgt_vocab_size=30)
    assert cfg.attention == "soft" and cfg.attention_window is None
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("attention", "attention_window")}
    assert TransformerConfig.from_dict(old) == cfg  # configs saved before the options load unchanged
    for bad in (dict(attention="sparse"), dict(attention_window=-1), dict(attention_window=2.0)):
        with pytest.raises(ConfigError):
            TransformerConfig.preset("tiny", src_vocab_size=30, tgt_vocab_size=30, **bad)


def test_window_at_least_the_length_equals_global():
    src, tgt = batch()
    glob, local = tiny(), tiny(attention_window=7)
    local.load_state_dict(glob.state_dict())
    logits_g, maps_g = glob(src, tgt, return_attention=True)
    logits_l, maps_l = local(src, tgt, return_attention=True)
    assert torch.allclose(logits_g, logits_l, atol=1e-6)
    for a, b in zip(maps_g.encoder_self + maps_g.decoder_self, maps_l.encoder_self + maps_l.decoder_self):
        assert torch.allclose(a, b, atol=1e-6)


def test_window_bands_the_self_attention_and_leaves_the_cross_attention_global():
    src, tgt = batch()
    model = tiny(attention_window=1)
    _, maps = model(src, tgt, return_attention=True)
    s, t = src.shape[1], tgt.shape[1]
    i_s, i_t = torch.arange(s), torch.arange(t)
    outside_enc = (i_s[:, None] - i_s[None, :]).abs() > 1
    outside_dec = (i_t[:, None] - i_t[None, :] > 1) | (i_t[None, :] > i_t[:, None])
    for w in maps.encoder_self:
        assert w[..., outside_enc].abs().max() == 0
    for w in maps.decoder_self:
        assert w[..., outside_dec].abs().max() == 0
    assert (maps.cross[0][0] > 0).all()  # the first sentence has no padding: every source token is seen


@pytest.mark.parametrize("overrides", [dict(attention_window=2), dict(attention="hard"),
                                       dict(attention="hard", attention_window=1)])
def test_incremental_decoding_equals_full_forward(overrides):
    src, tgt = batch()
    model = tiny(**overrides)
    full = model(src, tgt)
    memory = model.encode(src)
    cache = model.new_cache()
    steps = [model.decode(tgt[:, i : i + 1], memory, model.src_mask(src), cache=cache) for i in range(tgt.shape[1])]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


def test_hard_model_trains_with_gradients_everywhere():
    src, tgt = batch()
    model = tiny(attention="hard").train()
    logits = model(src, tgt)
    logits.logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_qkv_attention_draws_the_band_of_a_windowed_model(tmp_path, capsys):
    import numpy as np

    from qkv.cli import main
    from qkv.data.tokenizer import TokenizerPair
    from qkv.train.checkpoint import save_checkpoint
    from qkv.viz.maps import load_matrices

    src_texts = ["ein kleiner hund läuft schnell über die grüne wiese", "eine frau liest ein buch"]
    tgt_texts = ["a small dog runs fast across the green meadow", "a woman reads a book"]
    pair = TokenizerPair.train(src_texts, tgt_texts, vocab_size=60, model="word")
    cfg = TransformerConfig.preset(
        "tiny", src_vocab_size=pair.src.vocab_size, tgt_vocab_size=pair.tgt.vocab_size, attention_window=2
    )
    folder = save_checkpoint(tmp_path / "local", Transformer(cfg).eval(), tokenizers=pair)
    out = tmp_path / "att"
    argv = ["attention", src_texts[0], "--target", tgt_texts[0], "--model", str(folder), "--out", str(out),
            "--formats", "png"]
    assert main(argv) == 0
    kinds = {k.name: k for k in load_matrices(out / "attention.npz")}
    enc = kinds["encoder_self"].weights  # (L, H, S, S)
    i = np.arange(enc.shape[-1])
    assert enc.shape[-1] > 5 and (enc[..., np.abs(i[:, None] - i[None, :]) > 2] == 0).all()
    assert (enc[..., np.abs(i[:, None] - i[None, :]) <= 2] > 0).all()  # inside the band every weight counts
    dec = kinds["decoder_self"].weights  # (L, H, T, T)
    j = np.arange(dec.shape[-1])
    assert (dec[..., (j[:, None] - j[None, :] > 2) | (j[None, :] > j[:, None])] == 0).all()
    assert (out / "encoder_self_layer1.png").is_file()


@pytest.mark.parametrize("overrides", [dict(attention="hard"), dict(attention_window=1)])
def test_explain_head_by_hand_matches_hard_and_windowed_models(overrides):
    from qkv.viz.explain import explain_head

    model = tiny(**overrides)
    walk = explain_head(model, torch.tensor([[5, 6, 7, 8, 9, 2]]), layer=1, head=1)
    assert walk.max_abs_diff < 1e-5
    if "attention_window" in overrides:
        assert not walk.mask[0, 2] and walk.mask[0, 1] and (walk.weights[0, 2:] == 0).all()
    else:
        assert set(walk.weights.unique().tolist()) <= {0.0, 1.0}
