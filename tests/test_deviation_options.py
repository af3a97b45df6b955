"""The flagged deviations added for pretrained models keep the paper's defaults bit-exact and do what they say."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from qkv import Transformer, TransformerConfig
from qkv.config import ConfigError
from qkv.models.classifier import ClassifierConfig, TextClassifier
from qkv.nn.feedforward import PositionwiseFeedForward
from qkv.nn.positional import sinusoidal_table


def test_half_layout_holds_the_papers_sinusoids_split_sin_then_cos():
    paper, half = sinusoidal_table(10, 8), sinusoidal_table(10, 8, "half")
    assert half[:, :4].equal(paper[:, 0::2]) and half[:, 4:].equal(paper[:, 1::2])
    assert sinusoidal_table(10, 8, "interleaved").equal(paper)
    with pytest.raises(ValueError, match="layout"):
        sinusoidal_table(4, 4, "spiral")


def test_swish_is_x_sigmoid_x():
    ffn = PositionwiseFeedForward(4, 8, "swish")
    x = torch.randn(2, 3, 4)
    h = ffn.linear1(x)
    assert torch.allclose(ffn(x), ffn.linear2(h * torch.sigmoid(h)), atol=1e-6)


def test_defaults_are_todays_model():
    cfg = TransformerConfig.preset("tiny", src_vocab_size=20, tgt_vocab_size=20)
    model = Transformer(cfg)
    assert model.generator.bias is None and model.src_embed.scale == 8.0  # √64
    assert "generator.bias" not in model.state_dict()
    clf = TextClassifier(ClassifierConfig.preset("tiny", vocab_size=20))
    assert clf.segment is None and clf.embed_norm is None and clf.pooler is None
    assert set(clf.state_dict()) == set(TextClassifier(ClassifierConfig.preset("tiny", vocab_size=20)).state_dict())


def test_options_change_the_computation_as_documented():
    torch.manual_seed(0)
    base = TransformerConfig.preset("tiny", src_vocab_size=20, tgt_vocab_size=20)
    model = Transformer(base.replace(output_bias=True, scale_embeddings=False)).eval()
    assert model.src_embed.scale == 1.0
    with torch.no_grad():
        model.generator.bias.fill_(0.5)
        src, tgt = torch.tensor([[5, 6, 2]]), torch.tensor([[1, 7]])
        h = model.decoder(model.tgt_pos(model.tgt_embed(tgt)), model.encode(src), model.src_mask(src))[0]
        assert torch.allclose(model(src, tgt), F.linear(h, model.generator.weight) + 0.5, atol=1e-6)
    clf = TextClassifier(ClassifierConfig.preset("tiny", vocab_size=20, n_segments=2, embed_norm=True, pooler=True))
    h = torch.randn(1, 4, 32)
    assert torch.allclose(clf.classify(h, None), clf.head(torch.tanh(clf.pooler(h[:, 0]))))


def test_normal_init_draws_every_linear_and_embedding_from_n_0_std():
    cfg = TransformerConfig.preset("small", src_vocab_size=3000, tgt_vocab_size=3000, tie_embeddings="none")
    torch.manual_seed(0)
    paper = Transformer(cfg)
    torch.manual_seed(0)
    normal = Transformer(cfg.replace(init="normal", init_std=0.03))
    assert paper.encoder.layers[0].self_attn.q_proj.weight.std() > 0.05  # Xavier: sqrt(2 / 512) = 0.0625
    for name, p in normal.named_parameters():
        if "norm" in name:  # LayerNorm keeps ones and zeros
            assert p.equal(paper.get_parameter(name)), name
        elif name.endswith("bias"):
            assert not p.any(), name
        else:
            rows = p[1:] if "embed" in name else p  # the PAD row (id 0) stays zero
            assert abs(rows.std().item() - 0.03) < 0.002 and abs(rows.mean().item()) < 0.002, name
            assert "embed" not in name or not p[0].any(), name
    src, tgt = torch.randint(1, 3000, (2, 5)), torch.randint(1, 3000, (2, 4))
    assert torch.isfinite(normal(src, tgt)).all()
    tied = Transformer(cfg.replace(init="normal", tie_embeddings="all"))  # the output projection is the embedding
    assert tied.generator.weight is tied.src_embed.weight and not tied.generator.weight[0].any()
    assert abs(tied.generator.weight[1:].std().item() - 0.02) < 0.002


@pytest.mark.parametrize(
    "bad",
    [dict(positional_layout="zigzag"), dict(activation="tanh"), dict(output_bias=1), dict(init="xavier"),
     dict(init_std=0), dict(init_std="big")],
)
def test_bad_option_values_are_refused(bad):
    with pytest.raises(ConfigError):
        TransformerConfig.preset("tiny", src_vocab_size=20, tgt_vocab_size=20, **bad)
