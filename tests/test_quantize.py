"""Low-precision decoding copies (issue 17): int8 dynamic quantization of the linear layers and bf16 weights
give logits close to fp32 and mostly the same tokens, leave the fp32 model untouched, and are what
``Translator`` / the decoding commands use for ``--precision int8|bf16``."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from qkv import Transformer
from qkv.cli import build_parser
from qkv.data.special import BOS, EOS, PAD
from qkv.decode import beam_search, greedy_search
from qkv.decode.quantize import decoding_copy, quantize_linear
from qkv.nn.packed import PackedLinear, packing_available
from qkv_models import train_copier

VOCAB = 14


def sources(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, VOCAB, (n, 7), generator=g)
    lengths = torch.randint(2, 7, (n,), generator=g)
    for i, n_words in enumerate(lengths.tolist()):
        src[i, n_words] = EOS
        src[i, n_words + 1 :] = PAD
    return src


def token_ids() -> SimpleNamespace:
    """A stand-in tokenizer pair: sentences of token ids."""
    return SimpleNamespace(
        src=SimpleNamespace(encode_batch=lambda lines: [[int(t) for t in line.split()] for line in lines]),
        tgt=SimpleNamespace(decode=lambda y: " ".join(map(str, y))),
    )


@pytest.fixture(scope="module")
def copier() -> Transformer:
    """A tiny Transformer trained for a few seconds to copy its input (peaked outputs, as a trained model)."""

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        src = sources(32, seed=1000 + step)
        return src, torch.cat([torch.full((32, 1), BOS), src], dim=1)  # (B, 1 + S): BOS, the words, EOS, PAD

    return train_copier(VOCAB, batch)


def test_int8_copy_quantizes_every_linear_layer_and_leaves_the_model_alone(copier):
    before = {name: p.clone() for name, p in copier.state_dict().items()}
    q = quantize_linear(copier)
    kinds = {type(m) for m in q.modules()}
    assert nn.Linear not in kinds and torch.ao.nn.quantized.dynamic.Linear in kinds
    assert q.generator is not copier.generator and isinstance(copier.generator, nn.Linear)
    assert copier.generator.weight is copier.tgt_embed.weight  # the fp32 model keeps its tied matrix
    assert all(torch.equal(before[name], p) for name, p in copier.state_dict().items())


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_low_precision_logits_are_close_and_greedy_tokens_agree(copier, precision):
    low = decoding_copy(copier, precision)
    src = sources(48, seed=7)
    tgt = torch.cat([torch.full((48, 1), BOS), src[:, :-1]], dim=1)
    with torch.inference_mode():
        fp32, approx = copier(src, tgt), low(src, tgt).float()  # (B, T, V)
    error = (approx - fp32).abs()
    typical, worst = error.mean() / fp32.abs().mean(), error.max() / fp32.abs().max()
    assert typical < 0.05 and worst < 0.15, f"{precision} logits off by {typical:.3f} ({worst:.3f} at most)"
    assert (approx.argmax(-1) == fp32.argmax(-1)).float().mean() > 0.95
    same = sum(a == b for a, b in zip(greedy_search(copier, src), greedy_search(low, src)))
    assert same >= 0.8 * len(src), f"{precision} greedy agrees with fp32 on only {same}/{len(src)} sentences"
    beam = beam_search(low, src, beam_size=3)
    assert sum(a == b for a, b in zip(beam, beam_search(copier, src, beam_size=3))) >= 0.8 * len(src)


def test_fp32_off_a_packing_cpu_is_the_model_itself_and_bad_precisions_are_refused(copier):
    on_meta = nn.Sequential(nn.Linear(4, 4, device="meta"))
    assert decoding_copy(on_meta, "fp32") is on_meta
    with pytest.raises(ValueError, match="decoding precision must be fp32, int8 or bf16, got 'fp16'"):
        decoding_copy(copier, "fp16")
    with pytest.raises(ValueError, match="CPU only"):
        quantize_linear(nn.Linear(4, 4, device="meta"))


def test_translator_decodes_int8_with_one_quantized_copy(copier):
    from qkv.tasks.translation import Translator

    ids = token_ids()
    sentences = [" ".join(str(t) for t in row if t > EOS) for row in sources(24, seed=9).tolist()]
    fp32 = Translator(copier, ids).translate(sentences, beam_size=1)
    int8 = Translator(copier, ids, precision="int8")
    assert int8.precision == "int8" and int8.decoding_model() is int8.decoding_model()  # made once
    assert isinstance(int8.decoding_model().generator, torch.ao.nn.quantized.dynamic.Linear)
    assert sum(a == b for a, b in zip(fp32, int8.translate(sentences, beam_size=1))) >= 0.8 * len(sentences)
    assert int8.translate_nbest(sentences[:2], nbest=2, beam_size=2)[0][0][0]
    with pytest.raises(ValueError, match="int8 decodes on the CPU only"):
        Translator(copier, ids, device="meta", precision="int8")


@pytest.mark.parametrize("argv", [["translate", "--model", "m", "x"], ["evaluate", "--model", "m"], ["serve"]])
def test_decoding_commands_take_precision_int8(argv):
    assert build_parser().parse_args([*argv, "--precision", "int8"]).precision == "int8"


def test_training_commands_do_not_take_int8():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data", "d", "--src", "de", "--tgt", "en", "--out", "o",
                                   "--precision", "int8"])  # fmt: skip


needs_packing = pytest.mark.skipif(not packing_available("cpu"), reason="this torch has no oneDNN on the CPU")


@needs_packing
def test_fp32_copy_packs_its_linear_layers_and_decodes_the_same_tokens(copier):
    before = {name: p.clone() for name, p in copier.state_dict().items()}
    fast = decoding_copy(copier, "fp32")
    assert fast is not copier and not any(type(m) is nn.Linear for m in fast.modules())
    assert all(m.weight.dtype == torch.float32 for m in fast.modules() if isinstance(m, PackedLinear))
    assert all(type(m) is not PackedLinear for m in copier.modules())
    assert all(torch.equal(before[name], p) for name, p in copier.state_dict().items())
    src = sources(48, seed=5)
    tgt = torch.cat([torch.full((48, 1), BOS), src[:, :-1]], dim=1)
    with torch.inference_mode():
        plain, packed = copier(src, tgt), fast(src, tgt)  # (B, T, V), fp32 both
    assert packed.dtype == torch.float32 and torch.allclose(packed, plain, rtol=1e-4, atol=1e-4)
    assert greedy_search(fast, src) == greedy_search(copier, src)
    assert beam_search(fast, src, beam_size=3) == beam_search(copier, src, beam_size=3)


@needs_packing
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_w_q_w_k_w_v_side_by_side_are_packed_once_per_decoding(dtype):
    from qkv.nn.attention import KVCache, MultiHeadAttention
    from qkv.nn.packed import pack_linear_layers, side_by_side

    mha = pack_linear_layers(MultiHeadAttention(d_model=16, n_heads=4).to(dtype).eval())
    layers = (mha.q_proj, mha.k_proj, mha.v_proj)
    x = torch.randn(3, 2, 16).to(dtype)  # (B, T, D)
    with torch.inference_mode():
        packed, plain = side_by_side(layers)(x), side_by_side(layers, pack=False)(x)  # (B, T, 3D)
        cache, steps, made = KVCache(), [], []
        for t in range(2):
            step = x[:, t : t + 1]  # (B, 1, D): self-attention, one new position
            steps.append(mha(step, step, step, is_causal=True, cache=cache)[0])
            made.append(cache.qkv_proj)
    whole = mha(x, x, x, is_causal=True)[0]  # (B, T, D); no cache: the plain layers
    assert isinstance(made[0], PackedLinear) and made[1] is made[0]  # made at the first step, then reused
    assert packed.shape == (3, 2, 48) and torch.allclose(packed.float(), plain.float(), rtol=1e-2, atol=1e-2)
    assert torch.allclose(torch.cat(steps, dim=1).float(), whole.float(), rtol=1e-2, atol=1e-2)


def test_translator_makes_its_decoding_copy_again_when_the_weights_change(copier):
    from qkv.tasks.translation import Translator

    model = copy.deepcopy(copier)  # a model of its own, changed below
    translator = Translator(model, token_ids())
    first = translator.decoding_model()
    assert translator.decoding_model() is first  # made once
    with torch.no_grad():
        model.generator.weight.mul_(2.0)  # as an optimizer step or load_state_dict would
    second = translator.decoding_model()
    assert second is not first and translator.decoding_model() is second
    if packing_available("cpu"):
        assert torch.equal(second.generator.weight, model.generator.weight)


@needs_packing
def test_bf16_copy_packs_its_linear_layers_and_computes_the_same_products(copier):
    low = decoding_copy(copier, "bf16")
    packed = [m for m in low.modules() if isinstance(m, PackedLinear)]
    assert packed and not any(type(m) is nn.Linear for m in low.modules())
    assert isinstance(copier.generator, nn.Linear) and type(copier.generator) is nn.Linear  # the model untouched
    layer = packed[0]
    x = torch.randn(5, 3, layer.in_features).bfloat16()  # (B, T, D_in): any leading shape
    plain = nn.functional.linear(x, layer.weight, layer.bias)
    with torch.inference_mode():
        fast = layer(x)
    assert fast.shape == plain.shape and fast.dtype == torch.bfloat16
    assert torch.allclose(fast.float(), plain.float(), rtol=1e-2, atol=1e-2)
    assert torch.equal(layer(x), plain)  # with autograd on it is the plain layer


def test_bf16_decoding_keeps_an_fp32_cache_and_agrees_with_the_uncached_decoder(copier):
    from qkv.nn.attention import KVCache, MultiHeadAttention, decodes_in_fp32

    assert decodes_in_fp32(torch.zeros(1, dtype=torch.bfloat16)) and not decodes_in_fp32(torch.zeros(1))
    mha = MultiHeadAttention(d_model=16, n_heads=4).bfloat16().eval()
    x = torch.randn(3, 4, 16).bfloat16()  # (B, T, D)
    cache = KVCache()
    with torch.inference_mode():
        steps = [
            mha(x[:, t : t + 1], x[:, t : t + 1], x[:, t : t + 1], is_causal=True, cache=cache)[0] for t in range(4)
        ]
        whole = mha(x, x, x, is_causal=True)[0]  # (B, T, D), bf16 throughout
    assert cache.k.dtype == torch.float32 and steps[0].dtype == torch.bfloat16
    assert torch.allclose(torch.cat(steps, dim=1).float(), whole.float(), atol=0.05)
    low = decoding_copy(copier, "bf16")
    src = sources(24, seed=11)
    cached, uncached = greedy_search(low, src), greedy_search(low, src, use_cache=False)
    assert sum(a == b for a, b in zip(cached, uncached)) >= 0.9 * len(src)
