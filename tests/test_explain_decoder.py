"""qkv.viz.explain_decoder: one decoder head (masked self- or cross-attention) by hand equals the forward pass."""

from __future__ import annotations

import pytest
import torch

from qkv import Transformer, TransformerConfig
from qkv.viz.explain_decoder import explain_decoder_head


@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("kind", ["self", "cross"])
def test_every_decoder_head_matches_the_forward_pass(norm, kind):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig.preset("tiny", src_vocab_size=30, tgt_vocab_size=30, norm=norm)).eval()
    src = torch.tensor([[5, 6, 7, 2, 0]])  # one padding position
    tgt = torch.tensor([[1, 9, 4, 12]])
    for layer in range(2):
        for head in range(4):
            walk = explain_decoder_head(model, src, tgt, layer, head, kind)
            assert walk.max_abs_diff < 1e-5, walk.differences()
            assert torch.allclose(walk.weights.sum(-1), torch.ones(4), atol=1e-6)
            if kind == "self":
                assert torch.all(walk.weights.triu(1) == 0)  # causal: no peeking at later positions (§3.2.3)
            else:
                assert walk.weights.shape == (4, 5) and torch.all(walk.weights[:, 4] == 0)  # padding key


def test_a_wrong_hand_computation_would_be_caught():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig.preset("tiny", src_vocab_size=30, tgt_vocab_size=30)).eval()
    walk = explain_decoder_head(model, torch.tensor([[5, 6, 2]]), torch.tensor([[1, 7, 8]]), 1, 1, "cross")
    assert walk.max_abs_diff < 1e-5
    walk.output = walk.output + 1e-3
    assert walk.max_abs_diff >= 1e-3


def test_errors_name_the_problem():
    model = Transformer(TransformerConfig.preset("tiny", src_vocab_size=30, tgt_vocab_size=30)).eval()
    src, tgt = torch.tensor([[5, 2]]), torch.tensor([[1, 7]])
    with pytest.raises(ValueError, match="kind"):
        explain_decoder_head(model, src, tgt, kind="encoder")
    with pytest.raises(ValueError, match="layer 5 out of range"):
        explain_decoder_head(model, src, tgt, layer=5)
    with pytest.raises(ValueError, match="head 9 out of range"):
        explain_decoder_head(model, src, tgt, head=9)
