"""Activation checkpointing and FSDP (qkv.train.sharding) leave the loss and the gradients unchanged."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

import qkv
from qkv.nn.layers import DecoderLayer, EncoderLayer
from qkv.train.sharding import apply_activation_checkpointing, wrap_fsdp

V = 40


def tiny_model(dropout: float = 0.1) -> qkv.Transformer:
    torch.manual_seed(0)
    config = qkv.TransformerConfig.preset("tiny", src_vocab_size=V, tgt_vocab_size=V, dropout=dropout)
    return qkv.Transformer(config)


def batch():
    gen = torch.Generator().manual_seed(1)
    src = torch.randint(4, V, (3, 9), generator=gen)
    src[1, 6:] = 0  # padding, so the masks matter
    tgt_in = torch.randint(4, V, (3, 7), generator=gen)
    tgt_out = torch.randint(4, V, (3, 7), generator=gen)
    return src, tgt_in, tgt_out


def loss_and_grads(model, seed: int = 123):
    """Train-mode loss (dropout on) and the gradient of every parameter, by state_dict name."""
    src, tgt_in, tgt_out = batch()
    model.train()
    torch.manual_seed(seed)  # the same dropout masks for both models
    logits = model(src, tgt_in)
    loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), label_smoothing=0.1)
    loss.backward()
    grads = {}
    for name, p in model.named_parameters():
        grad = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad  # DTensor under FSDP2
        grads[name.replace("_checkpoint_wrapped_module.", "").replace("_fsdp_wrapped_module.", "")] = grad
    return loss.detach(), grads


def assert_same(a, b, atol=1e-6):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    torch.testing.assert_close(loss_a, loss_b, rtol=0, atol=atol)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-5, atol=atol, msg=name)


# -- activation checkpointing -----------------------------------------------------------------------------
def test_checkpointing_gives_identical_loss_and_gradients_with_dropout():
    plain = tiny_model(dropout=0.1)
    checkpointed = apply_activation_checkpointing(copy.deepcopy(plain))
    assert_same(loss_and_grads(plain), loss_and_grads(checkpointed))


def test_checkpointing_recomputes_each_layer_in_backward():
    model = apply_activation_checkpointing(tiny_model())
    layers = [m for m in model.modules() if isinstance(m, (EncoderLayer, DecoderLayer))]
    assert len(layers) == 4  # 2 encoder + 2 decoder layers, each still present inside its wrapper
    calls = []
    for layer in layers:  # a pre-hook: the recomputation stops early, once it has what backward needs
        layer.register_forward_pre_hook(lambda *_: calls.append(1))
    src, tgt_in, _ = batch()
    out = model(src, tgt_in)
    assert len(calls) == 4
    out.sum().backward()
    assert len(calls) == 8  # every layer ran a second time, to recompute its activations

    calls.clear()
    with torch.no_grad():
        model(src, tgt_in)
    assert len(calls) == 4  # without gradients, nothing is recomputed


def test_checkpointing_keeps_state_dict_keys_and_loads_plain_weights():
    plain = tiny_model()
    checkpointed = apply_activation_checkpointing(tiny_model())
    assert list(checkpointed.state_dict()) == list(plain.state_dict())
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(0.5)
    checkpointed.load_state_dict(plain.state_dict(), strict=True)
    plain.eval()
    checkpointed.eval()
    src, tgt_in, _ = batch()
    torch.testing.assert_close(checkpointed(src, tgt_in), plain(src, tgt_in))


def test_checkpointing_refuses_twice_and_models_without_layers():
    model = apply_activation_checkpointing(tiny_model())
    with pytest.raises(ValueError, match="already applied"):
        apply_activation_checkpointing(model)
    with pytest.raises(ValueError, match="no EncoderLayer"):
        apply_activation_checkpointing(torch.nn.Linear(3, 3))


def test_checkpointed_model_still_decodes_incrementally():
    model = apply_activation_checkpointing(tiny_model()).eval()
    src, tgt_in, _ = batch()
    with torch.no_grad():
        full = model(src, tgt_in)
        memory = model.encode(src)
        cache = model.new_cache()
        steps = [model.decode(tgt_in[:, i : i + 1], memory, model.src_mask(src), cache) for i in range(7)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-5)


# -- FSDP ---------------------------------------------------------------------------------------------------
@pytest.fixture
def process_group(tmp_path):
    """A one-process gloo group (a file store: no network port needed)."""
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("this torch build has no torch.distributed with the gloo backend")
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_wrap_fsdp_needs_a_process_group():
    if dist.is_available() and dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    with pytest.raises(RuntimeError, match="process group"):
        wrap_fsdp(tiny_model())


@pytest.mark.parametrize("checkpointing", [False, True], ids=["fsdp", "fsdp+checkpointing"])
def test_fsdp2_one_process_matches_plain_model(process_group, checkpointing):
    from qkv.train.sharding import _fully_shard

    if _fully_shard() is None:
        pytest.skip(f"FSDP2 fully_shard is not public in torch {torch.__version__} (needs 2.6+)")
    plain = tiny_model()
    sharded = copy.deepcopy(plain)
    if checkpointing:
        sharded = apply_activation_checkpointing(sharded)
    sharded = wrap_fsdp(sharded)
    assert sum(isinstance(m, torch.distributed.fsdp.FSDPModule) for m in sharded.modules()) == 5  # 4 + root
    assert_same(loss_and_grads(plain), loss_and_grads(sharded))
    # encode/decode are FSDP entry points too (used by decoding after training)
    src = batch()[0]
    sharded.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(sharded.encode(src), plain.encode(src))


@pytest.mark.filterwarnings("ignore:FSDP is switching to use `NO_SHARD`")
def test_fsdp1_fallback_one_process_matches_plain_model(process_group):
    plain = tiny_model()
    sharded = wrap_fsdp(copy.deepcopy(plain), prefer_fsdp2=False)
    assert isinstance(sharded, torch.distributed.fsdp.FullyShardedDataParallel)
    wrapped = [m for m in sharded.modules() if isinstance(m, torch.distributed.fsdp.FullyShardedDataParallel)]
    assert len(wrapped) == 5  # one unit per encoder/decoder layer, plus the root
    assert_same(loss_and_grads(plain), loss_and_grads(sharded))
