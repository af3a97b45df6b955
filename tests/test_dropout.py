"""qkv.nn.dropout: torch.nn.Dropout's semantics with a CPU mask drawn 16 bits per element (issue 17)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from qkv.nn.dropout import LEVELS, Dropout, dropout, keep_mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drop_rate_and_scale(dtype, p):
    torch.manual_seed(0)
    x = torch.ones(200_000, dtype=dtype)
    y = dropout(x, p)
    dropped = (y == 0).float().mean().item()
    # binomial standard deviation sqrt(p(1-p)/n) <= 0.0012: 5 of them
    assert abs(dropped - round(p * LEVELS) / LEVELS) < 0.006
    kept = y[y != 0]
    assert torch.equal(kept, torch.full_like(kept, 1.0 / (1.0 - p)))  # exactly the nn.Dropout scale
    assert y.dtype == dtype and y.shape == x.shape


def test_every_lane_of_a_word_is_uniform():
    """Four 16-bit draws per 64-bit word: all four positions must drop at the same rate."""
    torch.manual_seed(1)
    s = keep_mask(torch.Size([400_000]), 0.5, torch.float32)
    rates = [(s[i::4] == 0).float().mean().item() for i in range(4)]
    assert all(abs(r - 0.5) < 0.01 for r in rates), rates


def test_eval_zero_and_one():
    x = torch.randn(3, 5)
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match="dropout probability"):
        dropout(x, 1.5)


def test_gradient_is_the_same_mask():
    torch.manual_seed(2)
    x = torch.randn(64, 33, requires_grad=True)
    y = dropout(x, 0.25)
    y.backward(torch.ones_like(y))
    # y = x · m / (1 − p), so dy/dx = m / (1 − p): the forward pass's own mask
    assert torch.equal(x.grad, (y.detach() != 0) / 0.75) and torch.equal(y, x * x.grad)


def test_seed_repeats_and_matches_nn_dropout_in_distribution():
    x = torch.randn(8, 16, 32)
    torch.manual_seed(3)
    a = Dropout(0.1)(x)
    torch.manual_seed(3)
    b = Dropout(0.1)(x)
    assert torch.equal(a, b)
    torch.manual_seed(4)
    assert not torch.equal(a, Dropout(0.1)(x))
    # same expectation as torch's: E[y] = x (mean over many draws)
    torch.manual_seed(5)
    ours = torch.stack([dropout(x, 0.1) for _ in range(200)]).mean(0)
    theirs = torch.stack([F.dropout(x, 0.1) for _ in range(200)]).mean(0)
    assert (ours - x).abs().mean() < 1.5 * (theirs - x).abs().mean()


def test_module_is_an_nn_dropout_and_eval_is_identity():
    drop = Dropout(0.2)
    assert isinstance(drop, torch.nn.Dropout) and repr(drop) == "Dropout(p=0.2, inplace=False)"
    x = torch.randn(4, 4)
    assert drop.eval()(x) is x
