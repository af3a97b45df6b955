"""Masks (qkv.nn.masks): shapes and polarity of the helpers, refusal of bad masks, fully masked rows.

One convention for the whole library: bool, ``True`` = may attend (the polarity of
``torch.nn.functional.scaled_dot_product_attention``, the opposite of ``torch.nn.MultiheadAttention``).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qkv.nn import (
    MaskError,
    MultiHeadAttention,
    causal_mask,
    check_mask,
    combine_masks,
    lengths_mask,
    padding_mask,
    scaled_dot_product_attention,
)


# -- helpers: shapes and polarity ----------------------------------------------------------------------------
def test_padding_mask_shape_and_polarity():
    tokens = torch.tensor([[5, 6, 0, 0], [7, 8, 9, 0]])
    mask = padding_mask(tokens, pad_id=0)
    assert mask.dtype == torch.bool
    assert mask.shape == (2, 1, 1, 4)  # (B, 1, 1, T_k)
    assert mask[:, 0, 0].tolist() == [[True, True, False, False], [True, True, True, False]]


def test_padding_mask_uses_the_given_pad_id():
    tokens = torch.tensor([[3, 0, 3]])
    assert padding_mask(tokens, pad_id=3)[0, 0, 0].tolist() == [False, True, False]


def test_padding_mask_refuses_wrong_rank():
    with pytest.raises(MaskError, match=r"\(B, T\)"):
        padding_mask(torch.tensor([1, 2, 0]), pad_id=0)


def test_lengths_mask_matches_padding_mask():
    lengths = torch.tensor([2, 3, 4])
    tokens = torch.tensor([[4, 4, 0, 0], [4, 4, 4, 0], [4, 4, 4, 4]])
    got = lengths_mask(lengths, max_len=4)
    assert got.shape == (3, 1, 1, 4)
    assert torch.equal(got, padding_mask(tokens, pad_id=0))


def test_causal_mask_is_lower_triangular():
    mask = causal_mask(4)
    assert mask.dtype == torch.bool
    assert mask.shape == (1, 1, 4, 4)  # (1, 1, T_q, T_k)
    i, j = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    assert torch.equal(mask[0, 0], j <= i)  # query i sees keys 0..i only (§3.2.3)


def test_causal_mask_with_cached_keys_is_aligned_bottom_right():
    # 2 new queries at positions 3 and 4 of a 5-key sequence: query 0 sees keys 0..3, query 1 sees all.
    mask = causal_mask(2, 5)
    assert mask.shape == (1, 1, 2, 5)
    assert mask[0, 0].tolist() == [[True, True, True, True, False], [True] * 5]
    assert torch.equal(causal_mask(5, 5)[..., -2:, :], mask)


def test_causal_mask_refuses_fewer_keys_than_queries():
    with pytest.raises(MaskError, match="t_k >= t_q"):
        causal_mask(4, 2)


def test_combine_masks_is_logical_and_and_broadcasts():
    pad = padding_mask(torch.tensor([[4, 4, 0]]), pad_id=0)  # (1, 1, 1, 3)
    causal = causal_mask(3)  # (1, 1, 3, 3)
    both = combine_masks(pad, None, causal)
    assert both.shape == (1, 1, 3, 3)
    assert both[0, 0].tolist() == [[True, False, False], [True, True, False], [True, True, False]]
    assert combine_masks(None, None) is None
    assert combine_masks(pad) is pad


# -- refusal of bad masks ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(2, 1, 1, 5),  # a float mask: additive -inf masks are refused, not reinterpreted
        torch.ones(2, 1, 1, 5, dtype=torch.int64),  # an int mask
        torch.ones(2, 1, 1, 5, dtype=torch.uint8),  # an old-style byte mask
    ],
    ids=["float", "int64", "uint8"],
)
def test_non_bool_mask_is_refused_with_expected_dtype(bad):
    q = k = v = torch.randn(2, 3, 5, 4)
    with pytest.raises(MaskError, match=r"torch\.bool") as info:
        scaled_dot_product_attention(q, k, v, bad)
    assert str(bad.dtype) in str(info.value)  # says what it got


@pytest.mark.parametrize(
    "shape",
    [(2, 1, 1, 4), (2, 1, 3, 5), (3, 1, 1, 5), (1, 2, 3, 4, 5)],
    ids=["wrong_t_k", "wrong_t_q", "wrong_batch", "too_many_dims"],
)
def test_mask_of_wrong_shape_is_refused_with_expected_shape(shape):
    q = k = v = torch.randn(2, 3, 5, 4)  # (B, H, T, Dh)
    with pytest.raises(MaskError, match=r"\(2, 3, 5, 5\)"):  # names the shape it expected
        scaled_dot_product_attention(q, k, v, torch.ones(shape, dtype=torch.bool))


def test_multi_head_attention_refuses_bad_masks_too():
    mha = MultiHeadAttention(d_model=8, n_heads=2)
    x = torch.randn(2, 5, 8)
    with pytest.raises(MaskError, match=r"torch\.bool"):
        mha(x, x, x, torch.zeros(2, 1, 1, 5))
    with pytest.raises(MaskError, match="does not broadcast"):
        mha(x, x, x, torch.ones(2, 1, 1, 4, dtype=torch.bool))


def test_check_mask_accepts_broadcastable_masks():
    for shape in [(5, 5), (1, 5), (2, 1, 1, 5), (1, 1, 5, 5), (2, 3, 5, 5)]:
        check_mask(torch.ones(shape, dtype=torch.bool), (2, 3), 5, 5)
    with pytest.raises(MaskError, match=r"torch\.Tensor"):
        check_mask([[True]], (2, 3), 5, 5)


# -- fully masked query rows ---------------------------------------------------------------------------------
def _half_dtype_on_cpu() -> torch.dtype:
    """float16 where this CPU build runs softmax/matmul in it, else bfloat16."""
    try:
        x = torch.randn(2, 2, dtype=torch.float16, requires_grad=True)
        torch.softmax(x @ x, dim=-1).sum().backward()
        return torch.float16
    except RuntimeError:
        return torch.bfloat16


@pytest.mark.parametrize("dtype", [torch.float32, _half_dtype_on_cpu()], ids=str)
@pytest.mark.parametrize("need_weights", [True, False], ids=["explicit", "fused"])
def test_fully_masked_rows_give_zeros_and_no_nan_forward_and_backward(dtype, need_weights):
    q = torch.randn(2, 2, 4, 8, dtype=dtype, requires_grad=True)
    k = torch.randn(2, 2, 6, 8, dtype=dtype, requires_grad=True)
    v = torch.randn(2, 2, 6, 8, dtype=dtype, requires_grad=True)
    mask = torch.ones(2, 1, 4, 6, dtype=torch.bool)
    mask[0, :, 1] = False  # batch 0, query 1 may attend to nothing
    mask[1, :, :, 3:] = False  # batch 1 sees keys 0..2 only
    mask[1, :, 3] = False  # and its query 3 nothing
    out, weights = scaled_dot_product_attention(q, k, v, mask, need_weights=need_weights)
    assert torch.isfinite(out).all()
    assert (out[0, :, 1] == 0).all() and (out[1, :, 3] == 0).all()
    assert out[0, :, 0].abs().sum() > 0  # rows with keys are not zeroed
    if need_weights:
        assert torch.isfinite(weights).all()
        assert (weights[0, :, 1] == 0).all() and (weights[1, :, 3] == 0).all()
        assert (weights[1, :, :, 3:] == 0).all()  # masked keys get no weight
        sums = weights.float().sum(-1)
        allowed = mask.expand(2, 2, 4, 6).any(-1)
        torch.testing.assert_close(sums[allowed], torch.ones_like(sums[allowed]), atol=1e-2, rtol=0)
    out.float().pow(2).sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert (q.grad[0, :, 1] == 0).all()  # a query that sees nothing has no gradient
    assert (k.grad[1, :, 3:] == 0).all() and (v.grad[1, :, 3:] == 0).all()  # masked keys get none either


@pytest.mark.parametrize("dtype", [torch.float32, _half_dtype_on_cpu()], ids=str)
def test_fully_masked_rows_through_multi_head_attention(dtype):
    mha = MultiHeadAttention(d_model=16, n_heads=4).to(dtype)
    x = torch.randn(2, 3, 16, dtype=dtype, requires_grad=True)
    mask = padding_mask(torch.tensor([[0, 0, 0], [4, 4, 0]]), pad_id=0)  # batch 0: every key is padding
    out, w = mha(x, x, x, mask, need_weights=True)
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    assert (w[0] == 0).all()
    out.float().sum().backward()
    assert torch.isfinite(x.grad).all()
    for p in mha.parameters():
        assert torch.isfinite(p.grad).all()


# -- properties over random padding masks (hypothesis) -------------------------------------------------------
@st.composite
def _attention_case(draw):
    b = draw(st.integers(1, 3))
    h = draw(st.integers(1, 4))
    t_q = draw(st.integers(1, 6))
    t_k = draw(st.integers(1, 6))
    lengths = draw(st.lists(st.integers(0, t_k), min_size=b, max_size=b))  # 0 = a fully padded sequence
    causal = draw(st.booleans()) and t_k >= t_q
    seed = draw(st.integers(0, 2**16))
    return b, h, t_q, t_k, lengths, causal, seed


@settings(max_examples=40, deadline=None)
@given(_attention_case())
def test_property_weights_rows_sum_to_one_or_are_zero(case):
    b, h, t_q, t_k, lengths, causal, seed = case
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, t_q, 8, generator=g) * 3
    k = torch.randn(b, h, t_k, 8, generator=g) * 3
    v = torch.randn(b, h, t_k, 8, generator=g)
    mask = lengths_mask(torch.tensor(lengths), t_k)  # (B, 1, 1, T_k)
    if causal:
        mask = combine_masks(mask, causal_mask(t_q, t_k))
    out, w = scaled_dot_product_attention(q, k, v, mask)
    full = mask.expand(b, h, t_q, t_k)
    assert w.shape == (b, h, t_q, t_k) and out.shape == (b, h, t_q, 8)
    assert torch.isfinite(w).all() and torch.isfinite(out).all()
    assert (w[~full] == 0).all()  # no weight on a masked key
    has_key = full.any(-1)
    sums = w.sum(-1)
    torch.testing.assert_close(sums[has_key], torch.ones_like(sums[has_key]))
    assert (sums[~has_key] == 0).all() and (out[~has_key] == 0).all()
    # The fused path agrees, fully masked rows included.
    fused, none = scaled_dot_product_attention(q, k, v, mask, need_weights=False)
    assert none is None
    torch.testing.assert_close(fused, out, atol=1e-5, rtol=1e-5)
