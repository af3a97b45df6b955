"""Attention (qkv.nn.attention): Eq. 1 by hand, explicit vs fused paths, gradcheck, and equality with
``torch.nn.MultiheadAttention`` when the weights are copied across.

torch's masks have the opposite polarity to qkv's: for ``torch.nn.MultiheadAttention`` ``True`` = *masked*,
for qkv ``True`` = *may attend*; the tests convert with ``~``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from qkv.nn import KVCache, MultiHeadAttention, causal_mask, combine_masks, padding_mask
from qkv.nn import scaled_dot_product_attention as sdpa


def _qkv(b=2, h=3, t_q=5, t_k=7, d=8, dtype=torch.float64, requires_grad=False):
    g = torch.Generator().manual_seed(1)
    make = lambda t: torch.randn(b, h, t, d, generator=g).to(dtype).requires_grad_(requires_grad)  # noqa: E731
    return make(t_q), make(t_k), make(t_k)


def _key_padding(b, t_k, lengths):
    return torch.arange(t_k)[None, :] < torch.tensor(lengths)[:, None]  # (B, T_k), True = real key


# -- Eq. 1 ---------------------------------------------------------------------------------------------------
def test_explicit_path_equals_hand_computed_eq1():
    q, k, v = _qkv()
    keep = _key_padding(2, 7, [7, 4])
    mask = keep[:, None, None, :]  # (B, 1, 1, T_k)
    out, w = sdpa(q, k, v, mask)
    # softmax(Q Kᵀ / √d_k) V, one (batch, head, query) row at a time, masked keys dropped from the sum.
    for b in range(2):
        for h in range(3):
            for i in range(5):
                allowed = keep[b].nonzero().flatten()
                scores = torch.stack([q[b, h, i].dot(k[b, h, j]) / math.sqrt(8) for j in allowed.tolist()])
                p = scores.exp() / scores.exp().sum()
                expected_out = (p[:, None] * v[b, h, allowed]).sum(0)
                torch.testing.assert_close(out[b, h, i], expected_out, atol=1e-12, rtol=1e-10)
                torch.testing.assert_close(w[b, h, i, allowed], p, atol=1e-12, rtol=1e-10)
                assert (w[b, h, i, ~keep[b]] == 0).all()


def test_explicit_path_equals_matrix_formula_without_mask():
    q, k, v = _qkv(t_q=6, t_k=6)
    out, w = sdpa(q, k, v)
    expected_w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    torch.testing.assert_close(w, expected_w, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(out, expected_w @ v, atol=1e-12, rtol=1e-10)


def test_shape_errors_name_the_shapes():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="d_k"):
        sdpa(q, k[..., :4], v)
    with pytest.raises(ValueError, match="T_k"):
        sdpa(q, k, v[..., :3, :])


# -- explicit path (need_weights=True) vs fused path (need_weights=False) ------------------------------------
MASKS = {
    "none": lambda t_q, t_k: None,
    "padding": lambda t_q, t_k: _key_padding(2, t_k, [t_k, t_k - 3])[:, None, None, :],
    "padding+causal": lambda t_q, t_k: combine_masks(
        _key_padding(2, t_k, [t_k, t_k - 2])[:, None, None, :], causal_mask(t_q, t_k)
    ),
}


@pytest.mark.parametrize("mask_kind", list(MASKS))
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "is_causal"])
@pytest.mark.parametrize("t_q", [7, 3], ids=["square", "cached_keys"])
def test_fused_equals_explicit_float64(mask_kind, is_causal, t_q):
    q, k, v = _qkv(t_q=t_q, t_k=7)
    mask = MASKS[mask_kind](t_q, 7)
    explicit, w = sdpa(q, k, v, mask, is_causal=is_causal, need_weights=True)
    fused, none = sdpa(q, k, v, mask, is_causal=is_causal, need_weights=False)
    assert w is not None and none is None
    torch.testing.assert_close(fused, explicit, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mask_kind", list(MASKS))
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "is_causal"])
def test_fused_equals_explicit_bfloat16(mask_kind, is_causal):
    q, k, v = _qkv(b=2, h=4, t_q=16, t_k=16, d=32, dtype=torch.bfloat16)
    mask = MASKS[mask_kind](16, 16)
    explicit, _ = sdpa(q, k, v, mask, is_causal=is_causal, need_weights=True)
    fused, _ = sdpa(q, k, v, mask, is_causal=is_causal, need_weights=False)
    assert explicit.dtype == fused.dtype == torch.bfloat16
    relative = (fused.double() - explicit.double()).norm() / explicit.double().norm()
    assert relative <= 1e-2, f"relative error {relative:.2e} between fused and explicit bf16 attention"


@pytest.mark.parametrize("need_weights", [True, False], ids=["explicit", "fused"])
def test_is_causal_equals_an_explicit_causal_mask(need_weights):
    for t_q in (6, 2):  # a full sequence, and the last 2 queries of a 6-key sequence (cached keys)
        q, k, v = _qkv(t_q=t_q, t_k=6)
        got, _ = sdpa(q, k, v, is_causal=True, need_weights=need_weights)
        expected, _ = sdpa(q, k, v, causal_mask(t_q, 6), need_weights=True)
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)
    # and it really hides the future: changing the last key/value leaves earlier queries unchanged
    q, k, v = _qkv(t_q=6, t_k=6)
    out1, _ = sdpa(q, k, v, is_causal=True, need_weights=need_weights)
    k2, v2 = k.clone(), v.clone()
    k2[..., -1, :] += 5
    v2[..., -1, :] -= 5
    out2, _ = sdpa(q, k2, v2, is_causal=True, need_weights=need_weights)
    torch.testing.assert_close(out1[..., :-1, :], out2[..., :-1, :], atol=1e-12, rtol=0)
    assert not torch.allclose(out1[..., -1, :], out2[..., -1, :])


def test_is_causal_weights_are_zero_above_the_diagonal():
    q, k, v = _qkv(t_q=5, t_k=5)
    _, w = sdpa(q, k, v, is_causal=True)
    upper = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1)
    assert (w[..., upper] == 0).all()
    assert (w[..., ~upper] > 0).all()


# -- gradients -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("need_weights", [True, False], ids=["explicit", "fused"])
def test_gradcheck_attention_with_mask(need_weights):
    q, k, v = _qkv(b=2, h=2, t_q=3, t_k=4, d=3, requires_grad=True)
    mask = combine_masks(_key_padding(2, 4, [4, 2])[:, None, None, :], causal_mask(3, 4))
    mask = mask.clone()
    mask[1, :, 0] = False  # one fully masked query row: its output is constant zero, gradient zero

    def f(q, k, v):
        return sdpa(q, k, v, mask, need_weights=need_weights)[0]

    assert torch.autograd.gradcheck(f, (q, k, v), eps=1e-6, atol=1e-6)
    if need_weights:
        weights = lambda q, k, v: sdpa(q, k, v, mask)[1]  # noqa: E731
        assert torch.autograd.gradcheck(weights, (q, k, v), eps=1e-6, atol=1e-6)


def test_gradcheck_multi_head_attention():
    mha = MultiHeadAttention(d_model=6, n_heads=2).double()
    x = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    mask = padding_mask(torch.tensor([[4, 4, 4], [4, 4, 0]]), pad_id=0)
    f = lambda x: mha(x, x, x, mask, is_causal=True)[0]  # noqa: E731
    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-6)


# -- equality with torch.nn.MultiheadAttention ---------------------------------------------------------------
def _pair(d_model=16, n_heads=4, bias=True):
    """A qkv MultiHeadAttention and a torch one with the same weights (torch packs [W_Q; W_K; W_V])."""
    ours = MultiHeadAttention(d_model, n_heads, bias=bias).double().eval()
    ref = nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True).double().eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        if bias:
            ours.q_proj.bias.normal_()  # non-zero biases so that their placement is tested too
            ours.k_proj.bias.normal_()
            ours.v_proj.bias.normal_()
            ours.out_proj.bias.normal_()
            ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
            ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ours, ref


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("masking", ["none", "key_padding", "causal", "both"])
def test_self_attention_equals_torch(masking, bias):
    ours, ref = _pair(bias=bias)
    x = torch.randn(3, 6, 16, dtype=torch.float64)
    lengths = [6, 4, 1]
    keep = _key_padding(3, 6, lengths)  # (B, S), True = real
    use_pad = masking in ("key_padding", "both")
    use_causal = masking in ("causal", "both")
    mask = keep[:, None, None, :] if use_pad else None
    out, w = ours(x, x, x, mask, need_weights=True, is_causal=use_causal)
    ref_out, ref_w = ref(
        x,
        x,
        x,
        key_padding_mask=~keep if use_pad else None,  # torch: True = masked
        attn_mask=~causal_mask(6)[0, 0] if use_causal else None,
        need_weights=True,
        average_attn_weights=False,
    )
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=1e-5)  # per-head (B, H, T, T)
    fused, _ = ours(x, x, x, mask, need_weights=False, is_causal=use_causal)
    torch.testing.assert_close(fused, ref_out, atol=1e-5, rtol=1e-5)


def test_cross_attention_equals_torch():
    ours, ref = _pair()
    query = torch.randn(2, 4, 16, dtype=torch.float64)
    memory = torch.randn(2, 7, 16, dtype=torch.float64)
    keep = _key_padding(2, 7, [7, 3])
    out, w = ours(query, memory, memory, keep[:, None, None, :], need_weights=True)
    ref_out, ref_w = ref(query, memory, memory, key_padding_mask=~keep, average_attn_weights=False)
    assert w.shape == (2, 4, 4, 7)  # (B, H, T, S)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=1e-5)
    assert (w[1, :, :, 3:] == 0).all()


def test_distinct_key_and_value_equal_torch():
    ours, ref = _pair()
    q, k, v = (torch.randn(2, n, 16, dtype=torch.float64) for n in (3, 5, 5))
    out, w = ours(q, k, v, need_weights=True)
    ref_out, ref_w = ref(q, k, v, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=1e-5)


def test_average_of_heads_equals_torch_averaged_weights():
    ours, ref = _pair()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    _, w = ours(x, x, x, need_weights=True)
    _, ref_w = ref(x, x, x, average_attn_weights=True)
    torch.testing.assert_close(w.mean(dim=1), ref_w, atol=1e-5, rtol=1e-5)


# -- module-level behaviour ----------------------------------------------------------------------------------
def test_d_model_not_divisible_by_heads_is_refused():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(d_model=10, n_heads=3)


def test_input_shape_errors_name_the_shapes():
    mha = MultiHeadAttention(d_model=8, n_heads=2)
    with pytest.raises(ValueError, match=r"\(B, T_q, 8\)"):
        mha(torch.randn(2, 3, 6), torch.randn(2, 3, 8), torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match="key and value"):
        mha(torch.randn(2, 3, 8), torch.randn(2, 4, 8), torch.randn(2, 5, 8))


def test_self_attention_cache_grows_and_matches_full_causal_pass():
    mha = MultiHeadAttention(d_model=16, n_heads=4).double().eval()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    full, _ = mha(x, x, x, is_causal=True)
    cache = KVCache()
    steps = []
    for t in range(5):
        xt = x[:, t : t + 1]
        out, _ = mha(xt, xt, xt, is_causal=True, cache=cache)
        assert cache.length == t + 1 and cache.k.shape == (2, 4, t + 1, 4)  # (B, H, T_past, Dh)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-10, rtol=0)


def test_static_cross_attention_cache_projects_memory_once():
    mha = MultiHeadAttention(d_model=16, n_heads=4).double().eval()
    memory = torch.randn(2, 6, 16, dtype=torch.float64)
    q = torch.randn(2, 3, 16, dtype=torch.float64)
    expected, _ = mha(q, memory, memory)
    cache = KVCache(static=True)
    first, _ = mha(q[:, :1], memory, memory, cache=cache)
    k_id = id(cache.k)
    # later calls reuse the cached K, V: even a different memory argument is ignored
    second, _ = mha(q[:, 1:], torch.zeros_like(memory), torch.zeros_like(memory), cache=cache)
    assert id(cache.k) == k_id
    torch.testing.assert_close(torch.cat([first, second], 1), expected, atol=1e-10, rtol=0)
    cache.reorder(torch.tensor([1, 1, 0]))
    assert cache.k.shape[0] == 3
    torch.testing.assert_close(cache.k[0], cache.k[1])


@pytest.mark.parametrize("need_weights", [True, False])
def test_grouped_queries_equal_repeated_keys(need_weights):
    """Key/value batch B, query batch B·g: query rows g·i … g·i + g - 1 attend to key row i (beam search)."""
    mha = MultiHeadAttention(d_model=16, n_heads=4).double().eval()
    b, g, t_q, t_k = 3, 4, 2, 6
    memory = torch.randn(b, t_k, 16, dtype=torch.float64)
    query = torch.randn(b * g, t_q, 16, dtype=torch.float64)
    mask = padding_mask(torch.tensor([[5, 5, 5, 5, 5, 5], [5, 5, 0, 0, 0, 0], [5, 5, 5, 5, 0, 0]]), pad_id=0)
    rows = torch.arange(b).repeat_interleave(g)  # (B·g,): the key row of each query row
    expected, expected_w = mha(query, memory[rows], memory[rows], mask[rows], need_weights=need_weights)
    out, w = mha(query, memory, memory, mask, need_weights=need_weights)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    if need_weights:
        assert w.shape == (b * g, 4, t_q, t_k)
        torch.testing.assert_close(w, expected_w, atol=1e-12, rtol=0)
        assert (w[g : 2 * g, :, :, 2:] == 0).all()  # the padding of source 1 is hidden from all its queries
    # the same through a static cache, which then keeps one row per group and reorders whole groups
    cache = KVCache(static=True)
    first, _ = mha(query[:, :1], memory, memory, mask, cache=cache)
    second, _ = mha(query[:, 1:], memory, memory, mask, cache=cache)
    assert cache.group == g and cache.k.shape[0] == b
    torch.testing.assert_close(torch.cat([first, second], 1), expected, atol=1e-12, rtol=0)
    cache.reorder(torch.tensor([8, 9, 11, 10, 0, 3, 2, 1]))  # groups 2 and 0, beams shuffled inside each
    torch.testing.assert_close(cache.k, mha._split_heads(mha.k_proj(memory))[[2, 0]])


def test_grouped_queries_refuse_what_they_cannot_mean():
    mha = MultiHeadAttention(d_model=8, n_heads=2)
    memory, query = torch.randn(2, 5, 8), torch.randn(6, 3, 8)
    with pytest.raises(ValueError, match="divide it"):
        mha(torch.randn(5, 3, 8), memory, memory)
    with pytest.raises(ValueError, match="key mask only"):
        mha(query, memory, memory, torch.ones(2, 1, 3, 5, dtype=torch.bool))
    cache = KVCache(static=True)
    mha(query, memory, memory, cache=cache)
    with pytest.raises(ValueError, match="whole groups"):
        cache.reorder(torch.tensor([0, 1]))


def test_attention_dropout_only_in_train_mode():
    mha = MultiHeadAttention(d_model=16, n_heads=4, dropout=0.5)
    x = torch.randn(2, 5, 16)
    mha.train()
    a, _ = mha(x, x, x)
    b, _ = mha(x, x, x)
    assert not torch.allclose(a, b)
    mha.eval()
    a, _ = mha(x, x, x)
    b, _ = mha(x, x, x)
    torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("is_causal", [False, True])
def test_bf16_on_cpu_takes_the_written_out_path_and_matches_fused_fp32(is_causal):
    """In bf16 on a CPU, Eq. 1 is computed written out (PyTorch's fused CPU kernel is slower there); the
    result must be what F.scaled_dot_product_attention gives, and masked rows must still be zeros."""
    from qkv.nn.attention import fused_kernel_pays

    q, k, v = (torch.randn(2, 3, 6, 8) for _ in range(3))
    assert fused_kernel_pays(q) and not fused_kernel_pays(q.bfloat16())
    mask = torch.ones(2, 1, 6, 6, dtype=torch.bool)
    mask[1, :, 2] = False  # query 2 of sentence 1 may attend to nothing
    out, weights = sdpa(
        q.bfloat16(), k.bfloat16(), v.bfloat16(), mask, is_causal=is_causal, need_weights=False
    )
    assert weights is None and out.dtype == torch.bfloat16
    allowed = mask & torch.ones(6, 6, dtype=torch.bool).tril() if is_causal else mask
    reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed | ~allowed.any(-1, True))
    reference = reference * allowed.any(-1, True)
    assert torch.allclose(out.float(), reference, atol=3e-2)
    assert torch.all(out[1, :, 2] == 0)
