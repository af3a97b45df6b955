"""The encoder-decoder Transformer (qkv.models.transformer) and its config (qkv.config).

Covers: the parameter count of the base model (Table 3), gradients to every parameter, incremental decoding
with the KV cache, attention maps, dropout in train/eval mode, and config validation.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qkv import ConfigError, Transformer, TransformerConfig
from qkv.models.transformer import Encoder, layer_kwargs

PAD = 0
V = 23


def _tiny(**overrides) -> TransformerConfig:
    return TransformerConfig.preset("tiny", **{"src_vocab_size": V, "tgt_vocab_size": V, **overrides})


def _batch(b=3, s=7, t=6, vocab=V, seed=0):
    """Random source/target ids in 4..V-1, right-padded with PAD to different lengths."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab, (b, s), generator=g)
    tgt = torch.randint(4, vocab, (b, t), generator=g)
    for i in range(1, b):
        src[i, s - 2 * i :] = PAD
        tgt[i, t - i :] = PAD
    return src, tgt


# -- Table 3: the base model has ~65M parameters -------------------------------------------------------------
def expected_parameter_count(vocab: int, d_model: int, d_ff: int, n_layers: int) -> int:
    """Count the base model's parameters from the architecture of §3, independently of the model code.

    Shared source/target vocabulary with all three embedding matrices tied (§3.4): one ``V × D`` matrix and
    no output bias. Sinusoidal positions have no parameters.
    """
    embeddings = vocab * d_model
    attention = 4 * (d_model * d_model + d_model)  # W_Q, W_K, W_V, W_O with biases
    ffn = (d_model * d_ff + d_ff) + (d_ff * d_model + d_model)  # W_1, b_1, W_2, b_2 (Eq. 2)
    layer_norm = 2 * d_model  # gain and bias
    encoder_layer = attention + ffn + 2 * layer_norm
    decoder_layer = 2 * attention + ffn + 3 * layer_norm
    return embeddings + n_layers * (encoder_layer + decoder_layer)


def test_base_model_has_the_papers_65m_parameters():
    cfg = TransformerConfig.preset("base", src_vocab_size=37000, tgt_vocab_size=37000, tie_embeddings="all")
    expected = expected_parameter_count(37000, d_model=512, d_ff=2048, n_layers=6)
    with torch.device("meta"):  # shapes only: no 65M-parameter initialisation
        model = Transformer(cfg)
    got = model.num_parameters()
    print(f"base Transformer, shared 37k vocab, tied embeddings: {got:,} parameters (formula {expected:,})")
    assert got == expected
    assert got == sum(p.numel() for p in model.parameters())  # tied matrices counted once
    assert 60_000_000 <= got <= 66_000_000  # Table 3: 65M


def test_untied_embeddings_add_two_vocabulary_matrices():
    tied = Transformer(_tiny(tie_embeddings="all")).num_parameters()
    decoder = Transformer(_tiny(tie_embeddings="decoder")).num_parameters()
    untied = Transformer(_tiny(tie_embeddings="none")).num_parameters()
    assert decoder - tied == V * 64
    assert untied - tied == 2 * V * 64


def test_tie_modes_share_the_right_matrices():
    m = Transformer(_tiny(tie_embeddings="all"))
    assert m.src_embed.weight is m.tgt_embed.weight is m.generator.weight
    m = Transformer(_tiny(tie_embeddings="decoder", src_vocab_size=30))
    assert m.tgt_embed.weight is m.generator.weight and m.src_embed.weight is not m.tgt_embed.weight
    m = Transformer(_tiny(tie_embeddings="none"))
    assert len({id(m.src_embed.weight), id(m.tgt_embed.weight), id(m.generator.weight)}) == 3


# -- gradients -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tie", ["none", "decoder", "all"])
@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_gradients_reach_every_parameter(tie, norm, positional):
    src_vocab = V if tie == "all" else V + 5
    cfg = _tiny(tie_embeddings=tie, norm=norm, positional=positional, src_vocab_size=src_vocab)
    model = Transformer(cfg)
    src, tgt = _batch()
    logits = model(src, tgt)
    assert logits.shape == (3, 6, V)
    torch.nn.functional.cross_entropy(logits.reshape(-1, V), tgt.roll(-1, 1).reshape(-1)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reached {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient in {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient in {name}"


# -- incremental decoding with the KV cache ------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_incremental_decoding_equals_full_forward(norm, positional):
    model = Transformer(_tiny(norm=norm, positional=positional)).double().eval()
    src, tgt = _batch()
    full = model(src, tgt)  # (B, T, V)
    memory, mask = model.encode(src), model.src_mask(src)
    cache = model.new_cache()
    steps = []
    for t in range(tgt.shape[1]):
        assert cache.offset == t
        steps.append(model.decode(tgt[:, t : t + 1], memory, mask, cache=cache))  # (B, 1, V)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-9, rtol=0)


@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_incremental_decoding_after_reorder(norm, positional):
    model = Transformer(_tiny(norm=norm, positional=positional)).double().eval()
    src, tgt = _batch(b=4, s=8, t=7)
    perm = torch.tensor([2, 0, 3, 1])
    full = model(src, tgt)
    memory, mask = model.encode(src), model.src_mask(src)
    cache = model.new_cache()
    steps = [model.decode(tgt[:, :3], memory, mask, cache=cache)]  # a chunk of 3 first, then one by one
    cache.reorder(perm)
    memory, mask, tgt_p = memory[perm], mask[perm], tgt[perm]
    for t in range(3, tgt.shape[1]):
        steps.append(model.decode(tgt_p[:, t : t + 1], memory, mask, cache=cache))
    torch.testing.assert_close(steps[0], full[:, :3], atol=1e-9, rtol=0)
    torch.testing.assert_close(torch.cat(steps[1:], 1), full[perm, 3:], atol=1e-9, rtol=0)


def test_reorder_can_duplicate_rows_like_beam_search():
    model = Transformer(_tiny()).double().eval()
    src, tgt = _batch(b=2)
    memory, mask = model.encode(src), model.src_mask(src)
    cache = model.new_cache()
    model.decode(tgt[:, :2], memory, mask, cache=cache)
    index = torch.tensor([0, 0, 1, 1, 1])  # 2 sentences -> beams of 2 and 3
    cache.reorder(index)
    step = model.decode(tgt[index, 2:3], memory[index], mask[index], cache=cache)
    full = model(src, tgt[:, :3])[:, 2:3]
    torch.testing.assert_close(step, full[index], atol=1e-9, rtol=0)


# -- attention maps ------------------------------------------------------------------------------------------
def test_return_attention_maps_have_documented_shapes_and_masking():
    model = Transformer(_tiny(n_decoder_layers=3)).eval()
    src, tgt = _batch(b=3, s=7, t=6)
    logits, maps = model(src, tgt, return_attention=True)
    torch.testing.assert_close(logits, model(src, tgt))
    h = model.config.n_heads
    assert len(maps.encoder_self) == 2 and len(maps.decoder_self) == 3 and len(maps.cross) == 3
    upper = torch.triu(torch.ones(6, 6, dtype=torch.bool), diagonal=1)
    src_pad = src == PAD  # (B, S)
    for w in maps.encoder_self:
        assert w.shape == (3, h, 7, 7)
        assert (w.transpose(1, 3)[src_pad] == 0).all()  # no weight on padded source keys
    for w in maps.decoder_self:
        assert w.shape == (3, h, 6, 6)
        assert (w[..., upper] == 0).all()  # exactly zero above the diagonal (§3.2.3)
        torch.testing.assert_close(w.sum(-1), torch.ones(3, h, 6))
    for w in maps.cross:
        assert w.shape == (3, h, 6, 7)
        assert (w.transpose(1, 3)[src_pad] == 0).all()  # cross maps are zero on padded source keys
        torch.testing.assert_close(w.sum(-1), torch.ones(3, h, 6))


# -- dropout -------------------------------------------------------------------------------------------------
def test_embedding_and_residual_dropout_active_in_train_off_in_eval():
    model = Transformer(_tiny(dropout=0.3))
    dropouts = {name: m for name, m in model.named_modules() if isinstance(m, nn.Dropout)}
    assert "embed_dropout" in dropouts
    assert any(name.endswith("attn_block.dropout") for name in dropouts)  # residual dropout (§5.4)
    seen: dict[str, tuple[float, bool]] = {}

    def record(name):
        def hook(module, inputs, output):
            x = inputs[0]
            seen[name] = ((output[x != 0] == 0).float().mean().item(), torch.equal(output, x))

        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in dropouts.items() if m.p > 0]
    src, tgt = _batch()
    model.train()
    train_out = model(src, tgt)
    checked = ("embed_dropout", "encoder.layers.0.attn_block.dropout", "decoder.layers.1.ffn_block.dropout")
    for name in checked:
        zero_fraction, unchanged = seen[name]
        assert 0.15 < zero_fraction < 0.45 and not unchanged, f"{name} is not dropping out in train mode"
    assert not torch.allclose(train_out, model(src, tgt))
    seen.clear()
    model.eval()
    eval_out = model(src, tgt)
    assert seen and all(unchanged for _, unchanged in seen.values()), "dropout active in eval mode"
    torch.testing.assert_close(eval_out, model(src, tgt), atol=0, rtol=0)
    for handle in handles:
        handle.remove()
    # and eval mode is the same function as a model built without dropout
    no_drop = Transformer(_tiny(dropout=0.0)).eval()
    no_drop.load_state_dict(model.state_dict())
    torch.testing.assert_close(no_drop(src, tgt), eval_out, atol=0, rtol=0)


# -- inputs --------------------------------------------------------------------------------------------------
def test_position_past_max_len_is_a_clear_value_error():
    model = Transformer(_tiny(max_len=8)).eval()
    with pytest.raises(ValueError, match="max_len=8"):
        model(torch.randint(4, V, (1, 9)), torch.randint(4, V, (1, 3)))
    memory = model.encode(torch.randint(4, V, (1, 5)))
    cache = model.new_cache()
    model.decode(torch.randint(4, V, (1, 8)), memory, cache=cache)
    with pytest.raises(ValueError, match="position 8"):
        model.decode(torch.randint(4, V, (1, 1)), memory, cache=cache)


def test_bad_token_tensors_are_refused():
    model = Transformer(_tiny())
    with pytest.raises(ValueError, match=r"src must be token ids of shape \(B, length\)"):
        model(torch.randint(4, V, (7,)), torch.randint(4, V, (1, 3)))
    with pytest.raises(TypeError, match="integer"):
        model(torch.randn(1, 7), torch.randint(4, V, (1, 3)))


def test_encoder_from_layer_kwargs():
    cfg = _tiny()
    enc = Encoder(3, **layer_kwargs(cfg))
    x = torch.randn(2, 5, cfg.d_model)
    out, maps = enc(x, need_weights=True)
    assert out.shape == (2, 5, cfg.d_model) and len(maps) == 3 and maps[0].shape == (2, cfg.n_heads, 5, 5)
    minimal = Encoder(2, d_model=16, n_heads=2, d_ff=32)  # the norm and eps default like EncoderLayer's
    assert minimal(torch.randn(1, 3, 16))[0].shape == (1, 3, 16)


# -- config --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(d_model=100, n_heads=8), "d_model"),
        (dict(d_model=-512), "d_model"),
        (dict(n_heads=0), "n_heads"),
        (dict(d_ff=-1), "d_ff"),
        (dict(n_layers=-6), "n_layers"),
        (dict(n_decoder_layers=0), "n_decoder_layers"),
        (dict(max_len=0), "max_len"),
        (dict(src_vocab_size=-5), "src_vocab_size"),
        (dict(dropout=1.5), "dropout"),
        (dict(attention_dropout=-0.1), "attention_dropout"),
        (dict(activation="tanh"), "activation"),
        (dict(norm="sandwich"), "norm"),
        (dict(positional="rotary"), "positional"),
        (dict(tie_embeddings="encoder"), "tie_embeddings"),
        (dict(tie_embeddings="all", src_vocab_size=100, tgt_vocab_size=200), "tie_embeddings"),
        (dict(pad_id=5000), "pad_id"),
        (dict(pad_id=-1), "pad_id"),
        # wrong types, as a hand-written JSON config may have them: ConfigError, not a TypeError
        (dict(n_layers=True), "n_layers"),
        (dict(d_model=512.0), "d_model"),
        (dict(n_decoder_layers="3"), "n_decoder_layers"),
        (dict(dropout="0.1"), "dropout"),
        (dict(eps=0.0), "eps"),
    ],
)
def test_invalid_config_raises_config_error_naming_the_field(overrides, field):
    data = {**_tiny().to_dict(), **overrides}
    with pytest.raises(ConfigError, match=field):
        TransformerConfig.from_dict(data)


def test_unknown_options_are_refused_by_from_dict_and_preset():
    with pytest.raises(ConfigError, match="n_head_count"):
        TransformerConfig.from_dict({**_tiny().to_dict(), "n_head_count": 4})
    with pytest.raises(ConfigError, match="d_modle"):
        TransformerConfig.preset("tiny", src_vocab_size=V, tgt_vocab_size=V, d_modle=64)
    with pytest.raises(ConfigError, match="huge"):
        TransformerConfig.preset("huge", src_vocab_size=V, tgt_vocab_size=V)


def test_config_round_trips_and_is_frozen():
    cfg = _tiny(norm="pre", n_decoder_layers=3)
    assert TransformerConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(d_model=128).d_model == 128 and cfg.d_model == 64
    with pytest.raises(AttributeError):
        cfg.d_model = 128
    base = TransformerConfig.preset("base", src_vocab_size=V, tgt_vocab_size=V)
    assert (base.d_model, base.n_heads, base.d_ff, base.n_layers, base.dropout) == (512, 8, 2048, 6, 0.1)
    big = TransformerConfig.preset("big", src_vocab_size=V, tgt_vocab_size=V)
    assert (big.d_model, big.n_heads, big.d_ff, big.dropout) == (1024, 16, 4096, 0.3)
