"""Encoder and decoder layers (qkv.nn.layers, §3.1) equal torch's TransformerEncoderLayer /
TransformerDecoderLayer with the weights copied across, post-LN (the paper) and pre-LN, in float64.

Parameter correspondence (torch packs ``in_proj_weight = [W_Q; W_K; W_V]``):

    qkv                     torch
    self_attn.{q,k,v}_proj  self_attn.in_proj_{weight,bias}
    cross_attn.*            multihead_attn.*
    ffn.linear1/linear2     linear1/linear2
    attn_block.norm         norm1        (encoder)
    ffn_block.norm          norm2 / norm3
    self_block/cross_block  norm1/norm2  (decoder)
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qkv.nn import DecoderLayer, EncoderLayer, LayerCache, causal_mask
from qkv.nn.layers import Residual

D, H, F = 16, 4, 32


def _copy_attention(ours, ref: nn.MultiheadAttention) -> None:
    ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
    ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
    ref.out_proj.weight.copy_(ours.out_proj.weight)
    ref.out_proj.bias.copy_(ours.out_proj.bias)


def _copy_linear_norm(src: nn.Module, dst: nn.Module) -> None:
    dst.weight.copy_(src.weight)
    dst.bias.copy_(src.bias)


def _randomize(module: nn.Module) -> None:
    """Non-trivial biases and LayerNorm affine parameters, so a misplaced one would show."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.3 * torch.randn_like(p))


def _encoder_pair(norm_first: bool):
    ours = EncoderLayer(D, H, F, dropout=0.0, norm="pre" if norm_first else "post").double()
    _randomize(ours)
    ref = nn.TransformerEncoderLayer(
        D, H, F, dropout=0.0, activation="relu", batch_first=True, norm_first=norm_first
    ).double()
    with torch.no_grad():
        _copy_attention(ours.self_attn, ref.self_attn)
        _copy_linear_norm(ours.ffn.linear1, ref.linear1)
        _copy_linear_norm(ours.ffn.linear2, ref.linear2)
        _copy_linear_norm(ours.attn_block.norm, ref.norm1)
        _copy_linear_norm(ours.ffn_block.norm, ref.norm2)
    return ours.eval(), ref.eval()


def _decoder_pair(norm_first: bool):
    ours = DecoderLayer(D, H, F, dropout=0.0, norm="pre" if norm_first else "post").double()
    _randomize(ours)
    ref = nn.TransformerDecoderLayer(
        D, H, F, dropout=0.0, activation="relu", batch_first=True, norm_first=norm_first
    ).double()
    with torch.no_grad():
        _copy_attention(ours.self_attn, ref.self_attn)
        _copy_attention(ours.cross_attn, ref.multihead_attn)
        _copy_linear_norm(ours.ffn.linear1, ref.linear1)
        _copy_linear_norm(ours.ffn.linear2, ref.linear2)
        _copy_linear_norm(ours.self_block.norm, ref.norm1)
        _copy_linear_norm(ours.cross_block.norm, ref.norm2)
        _copy_linear_norm(ours.ffn_block.norm, ref.norm3)
    return ours.eval(), ref.eval()


def _keep(lengths, t):
    return torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]  # (B, T), True = real token


NORMS = pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])


@NORMS
@pytest.mark.parametrize("padded", [False, True], ids=["no_mask", "padding"])
def test_encoder_layer_equals_torch(norm_first, padded):
    ours, ref = _encoder_pair(norm_first)
    x = torch.randn(3, 7, D, dtype=torch.float64)
    keep = _keep([7, 5, 2], 7)
    mask = keep[:, None, None, :] if padded else None
    out, w = ours(x, mask, need_weights=True)
    expected = ref(x, src_key_padding_mask=~keep if padded else None)  # torch: True = masked
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)  # (grad enabled: torch's slow path)
    assert w.shape == (3, H, 7, 7)
    if padded:
        assert (w[2, :, :, 2:] == 0).all()


@NORMS
def test_decoder_layer_equals_torch_with_causal_and_memory_padding(norm_first):
    ours, ref = _decoder_pair(norm_first)
    x = torch.randn(3, 5, D, dtype=torch.float64)
    memory = torch.randn(3, 6, D, dtype=torch.float64)
    mem_keep = _keep([6, 3, 1], 6)
    out, self_w, cross_w = ours(x, memory, mem_keep[:, None, None, :], need_weights=True)
    expected = ref(
        x,
        memory,
        tgt_mask=~causal_mask(5)[0, 0],  # torch: True = masked
        memory_key_padding_mask=~mem_keep,
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert self_w.shape == (3, H, 5, 5) and cross_w.shape == (3, H, 5, 6)
    assert (torch.triu(self_w.new_ones(5, 5), 1) * self_w == 0).all()  # causal: nothing above the diagonal
    assert (cross_w[1, :, :, 3:] == 0).all() and (cross_w[2, :, :, 1:] == 0).all()


@NORMS
def test_decoder_layer_with_target_padding_equals_torch(norm_first):
    ours, ref = _decoder_pair(norm_first)
    x = torch.randn(2, 5, D, dtype=torch.float64)
    memory = torch.randn(2, 4, D, dtype=torch.float64)
    tgt_keep = _keep([5, 3], 5)
    out, _, _ = ours(x, memory, None, self_mask=tgt_keep[:, None, None, :])
    expected = ref(x, memory, tgt_mask=~causal_mask(5)[0, 0], tgt_key_padding_mask=~tgt_keep)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@NORMS
def test_decoder_layer_incremental_equals_full(norm_first):
    ours, _ = _decoder_pair(norm_first)
    x = torch.randn(2, 5, D, dtype=torch.float64)
    memory = torch.randn(2, 4, D, dtype=torch.float64)
    mem_mask = _keep([4, 2], 4)[:, None, None, :]
    full, _, _ = ours(x, memory, mem_mask)
    cache = LayerCache()
    steps = [ours(x[:, t : t + 1], memory, mem_mask, cache=cache)[0] for t in range(5)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-10, rtol=0)


def test_decoder_prediction_at_i_ignores_later_inputs():
    ours, _ = _decoder_pair(False)
    x = torch.randn(1, 6, D, dtype=torch.float64)
    memory = torch.randn(1, 4, D, dtype=torch.float64)
    a, _, _ = ours(x, memory)
    x2 = x.clone()
    x2[:, 4:] = torch.randn(1, 2, D, dtype=torch.float64)
    b, _, _ = ours(x2, memory)
    torch.testing.assert_close(a[:, :4], b[:, :4], atol=1e-12, rtol=0)
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_residual_dropout_only_in_train_mode():
    layer = EncoderLayer(D, H, F, dropout=0.5)
    x = torch.randn(2, 5, D)
    layer.train()
    assert not torch.allclose(layer(x)[0], layer(x)[0])
    layer.eval()
    torch.testing.assert_close(layer(x)[0], layer(x)[0], atol=0, rtol=0)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_residual_in_training_is_the_paper_formula(norm):
    """In training the residual computes LayerNorm(x + Dropout(Sublayer(x))) (post) or
    x + Dropout(Sublayer(LayerNorm(x))) (pre) with the very mask ``Dropout`` draws under the same seed."""
    residual = Residual(D, 0.3, norm=norm, eps=1e-5).train()
    nn.init.normal_(residual.norm.weight)
    lin = nn.Linear(D, D)
    x = torch.randn(3, 6, D)
    torch.manual_seed(9)
    got, _ = residual(x, lambda h: (lin(h), None))
    torch.manual_seed(9)
    if norm == "post":
        want = residual.norm(x + residual.dropout(lin(x)))
    else:
        want = x + residual.dropout(lin(residual.norm(x)))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_gelu_option_differs_from_relu_and_bad_options_are_refused():
    torch.manual_seed(0)
    relu = EncoderLayer(D, H, F, dropout=0.0).eval()
    gelu = EncoderLayer(D, H, F, dropout=0.0, activation="gelu").eval()
    gelu.load_state_dict(relu.state_dict())
    x = torch.randn(1, 4, D)
    assert not torch.allclose(relu(x)[0], gelu(x)[0])
    with pytest.raises(ValueError, match="activation"):
        EncoderLayer(D, H, F, activation="tanh")
    with pytest.raises(ValueError, match="norm"):
        Residual(D, 0.0, norm="sandwich", eps=1e-5)
