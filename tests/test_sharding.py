"""Activation checkpointing and FSDP (qkv.train.sharding) leave the loss and the gradients unchanged."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import qkv
from qkv.nn.layers import DecoderLayer, EncoderLayer
from qkv.train import TrainConfig, evaluate, load_checkpoint, train
from qkv.train.checkpoint import copy_checkpoint, load_trainer_state
from qkv.train.sharding import apply_activation_checkpointing, wrap_fsdp
from test_ddp import config as ddp_config
from test_ddp import free_port, gloo_group, pairs
from test_ddp import model as ddp_model

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


# -- FSDP with 2 processes through the trainer ------------------------------------------------------------
#: FSDP2 (``fully_shard``, torch >= 2.6), the one FSDP the trainer uses.
VERSIONS = ("fsdp2",)


def fsdp_config(max_steps: int, fsdp: bool) -> TrainConfig:
    """The DDP test's options (accum_steps=2, clipping), with or without FSDP."""
    return ddp_config(max_steps, fsdp=fsdp)


def fsdp_runs_of_one_rank(out: Path) -> dict:
    """An uninterrupted 6-step FSDP run in ``out/whole``, a 3-step run resumed to 6 in ``out/split``."""
    tokens: list[int] = []  # rank 0's target tokens per step (the callback runs on rank 0 only)

    def record(event):
        if event["event"] == "step":
            tokens.append(event["tokens"])

    data = pairs(60, 1), pairs(8, 2)
    whole = train(ddp_model(), *data, fsdp_config(6, True), out_dir=out / "whole", device="cpu", callback=record)
    train(ddp_model(), *data, fsdp_config(3, True), out_dir=out / "split", device="cpu")
    resumed = train(ddp_model(), *data, fsdp_config(6, True), out_dir=out / "split", resume=True, device="cpu")
    return {"steps": [whole.steps, resumed.steps], "loss": whole.metrics["loss"], "tokens": tokens}


def fsdp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """Rank ``rank`` of 2: the runs of :func:`fsdp_runs_of_one_rank` with FSDP2."""
    with gloo_group(rank, world_size, port):
        for version in VERSIONS:
            report = fsdp_runs_of_one_rank(Path(out_dir) / version)
            (Path(out_dir) / version / f"rank{rank}.json").write_text(json.dumps(report))


@pytest.fixture(scope="module")
def fsdp_runs(tmp_path_factory):
    """The 2-rank FSDP runs of :func:`fsdp_worker` and a 1-process run without FSDP on the same global batches."""
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("this torch build has no torch.distributed with the gloo backend")
    out = tmp_path_factory.mktemp("fsdp")
    mp.spawn(fsdp_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    tokens: list[int] = []
    single = train(
        ddp_model(),
        pairs(60, 1),
        pairs(8, 2),
        fsdp_config(6, False),
        out_dir=out / "single",
        device="cpu",
        callback=lambda e: tokens.append(e["tokens"]) if e["event"] == "step" else None,
    )
    return out, single, tokens


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(folder).model.state_dict()


@pytest.mark.parametrize("version", VERSIONS)
def test_fsdp_two_processes_match_one_process_on_the_global_batch(fsdp_runs, version):
    out, single, single_tokens = fsdp_runs
    ranks = [json.loads((out / version / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["steps"] for r in ranks] == [[6, 6], [6, 6]]
    # the data is sharded: rank 0 trains on part of each global batch, not all of it
    assert len(ranks[0]["tokens"]) == len(single_tokens) == 6
    assert all(0 < a < b for a, b in zip(ranks[0]["tokens"], single_tokens)), (ranks[0]["tokens"], single_tokens)
    # validation is sharded too and reduced: every rank reports the global loss
    assert ranks[0]["loss"] == pytest.approx(ranks[1]["loss"], rel=1e-6)
    assert ranks[0]["loss"] == pytest.approx(single.metrics["loss"], rel=1e-5)
    # the full weights (gathered from the shards) and the full Adam state are those of one process
    fsdp, plain = weights(out / version / "whole" / "last"), weights(out / "single" / "last")
    assert not torch.equal(plain["src_embed.embedding.weight"], ddp_model().state_dict()["src_embed.embedding.weight"])
    for name, a in plain.items():
        if name.endswith("k_proj.bias"):  # exact gradient 0: Adam amplifies rounding noise (see test_ddp.py)
            assert (a - fsdp[name]).abs().max() < 6 * 2e-3, name
            continue
        torch.testing.assert_close(fsdp[name], a, rtol=0, atol=1e-5, msg=name)
    state_fsdp = load_trainer_state(out / version / "whole" / "last")["optimizer"]
    state_plain = load_trainer_state(out / "single" / "last")["optimizer"]
    assert state_fsdp["param_groups"][0]["params"] == state_plain["param_groups"][0]["params"]
    assert state_fsdp["state"].keys() == state_plain["state"].keys()
    for pid, moments in state_plain["state"].items():
        assert float(state_fsdp["state"][pid]["step"]) == float(moments["step"]) == 6
        for key in ("exp_avg", "exp_avg_sq"):  # the full Adam moments, not this rank's shard
            torch.testing.assert_close(state_fsdp["state"][pid][key], moments[key], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("version", VERSIONS)
def test_fsdp_resume_matches_an_uninterrupted_run(fsdp_runs, version):
    out = fsdp_runs[0] / version
    assert json.loads((out / "split" / "last" / "config.json").read_text())["step"] == 6
    whole, resumed = weights(out / "whole" / "last"), weights(out / "split" / "last")
    for name, a in whole.items():
        torch.testing.assert_close(resumed[name], a, rtol=0, atol=1e-5, msg=name)
    state_whole = load_trainer_state(out / "whole" / "last")["optimizer"]["state"]
    state_resumed = load_trainer_state(out / "split" / "last")["optimizer"]["state"]
    for pid, moments in state_whole.items():
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(state_resumed[pid][key], moments[key], rtol=0, atol=1e-7)


def test_fsdp_checkpoint_resumes_without_fsdp(fsdp_runs, tmp_path):
    """The checkpoint of an FSDP run is that of a plain run: one process resumes it as its own."""
    out = fsdp_runs[0]
    results = {}
    for run in ("fsdp2/whole", "single"):  # both at step 6: continue each to step 8 in one process, without FSDP
        copy_checkpoint(out / run / "last", tmp_path / run / "last", with_trainer_state=True)
        model = ddp_model()
        train(model, pairs(60, 1), pairs(8, 2), fsdp_config(8, False), out_dir=tmp_path / run, resume=True)
        results[run] = model.state_dict()
    for name, a in results["single"].items():
        if not name.endswith("k_proj.bias"):  # see above
            torch.testing.assert_close(results["fsdp2/whole"][name], a, rtol=0, atol=1e-5, msg=name)


def test_lockstep_evaluation_runs_as_many_forwards_on_every_rank():
    """FSDP validation: ranks share the batches out but each runs the same number of forwards."""
    model = ddp_model()
    data = pairs(40, 3)
    calls = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    full = evaluate(model, data, max_tokens=40)
    batches = len(calls)
    assert batches % 2 == 1  # an odd number: one rank has a batch fewer
    parts = []
    for rank in (0, 1):  # without a process group nothing is reduced: each rank's own sums
        calls.clear()
        parts.append(evaluate(model, data, max_tokens=40, rank=rank, world_size=2, lockstep=True))
        assert len(calls) == (batches + 1) // 2
    assert sum(p["tokens"] for p in parts) == full["tokens"]  # the extra forward is not counted
    loss = sum(p["loss"] * p["tokens"] for p in parts) / full["tokens"]
    assert loss == pytest.approx(full["loss"], rel=1e-6)
