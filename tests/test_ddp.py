"""Data-parallel training (issue 6): 2 CPU processes with gloo match one process on the same global batch."""

from __future__ import annotations

import json
import os
import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from qkv import Transformer, TransformerConfig
from qkv.train import TrainConfig, load_checkpoint, train
from qkv.train.distributed import DistEnv

VOCAB = 16


def pairs(n: int, seed: int) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        seq = [rng.randrange(4, VOCAB) for _ in range(rng.randint(2, 7))]
        out.append((seq, seq[::-1]))
    return out


def model() -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig.preset("tiny", src_vocab_size=VOCAB, tgt_vocab_size=VOCAB))


def config(max_steps: int, **options) -> TrainConfig:
    # accum_steps=2 also exercises DDP's no_sync(); dropout is 0 in the tiny preset
    return TrainConfig(
        max_steps=max_steps,
        max_tokens=80,
        accum_steps=2,
        lr_schedule="inverse_sqrt",
        lr=2e-3,
        warmup_steps=3,
        clip_norm=1.0,
        progress=False,
        seed=5,
        **options,
    )


@contextmanager
def gloo_group(rank: int, world_size: int, port: int) -> Iterator[None]:
    """Inside a spawned process: the torchrun environment variables and a gloo process group, then cleanup."""
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    with gloo_group(rank, world_size, port):
        # 3 steps, stop, then resume to 6: checkpoints come from rank 0 only
        train(model(), pairs(60, 1), pairs(8, 2), config(3), out_dir=out_dir, device="cpu")
        result = train(
            model(), pairs(60, 1), pairs(8, 2), config(6), out_dir=out_dir, resume=True, device="cpu"
        )
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump({"steps": result.steps, "loss": result.metrics["loss"]}, f)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dist_env_from_torchrun_variables(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    env = DistEnv.from_env()
    assert (env.rank, env.world_size, env.local_rank, env.is_main, env.distributed) == (1, 4, 1, False, True)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="outside WORLD_SIZE"):
        DistEnv.from_env()


def test_a_plain_cuda_device_gets_its_index_before_set_device(monkeypatch):
    """``--device cuda`` on one GPU: torch.cuda.set_device rejects a device without an index (the first
    `qkv train --device cuda` on an H200 failed so, session 21), so init_distributed names the current GPU."""
    from qkv.train import distributed

    seen = []

    def set_device(device):
        if isinstance(device, torch.device) and device.index is None:
            raise ValueError(f"Expected a torch.device with a specified index or an integer, but got:{device}")
        seen.append(device)

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    env, device, created = distributed.init_distributed("cuda")
    assert device == torch.device("cuda", 3) and seen == [device] and not created and not env.distributed
    _, device, _ = distributed.init_distributed("cuda:1")
    assert device == torch.device("cuda", 1) and seen[-1] == device


def test_two_gloo_processes_match_one_process(tmp_path):
    out_dir = tmp_path / "ddp"
    mp.spawn(worker, args=(2, free_port(), str(out_dir)), nprocs=2, join=True)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = model()
        single = train(reference, pairs(60, 1), pairs(8, 2), config(6), device="cpu")
    finally:
        torch.set_num_threads(threads)

    ranks = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["steps"] for r in ranks] == [6, 6]
    # validation loss is sharded over ranks and reduced: every rank sees the global value
    assert ranks[0]["loss"] == pytest.approx(ranks[1]["loss"], rel=1e-6)
    assert ranks[0]["loss"] == pytest.approx(single.metrics["loss"], rel=1e-4)
    ddp = load_checkpoint(out_dir / "last").model
    assert json.loads((out_dir / "last" / "config.json").read_text())["step"] == 6
    for (name, a), b in zip(reference.state_dict().items(), ddp.state_dict().values()):
        if name.endswith("k_proj.bias"):
            # its exact gradient is 0 (softmax ignores a constant added to a row of scores); Adam turns
            # rounding noise of ~1e-10 into steps of size lr, so only the magnitude is comparable
            assert (a - b).abs().max() < 6 * 2e-3, name
            continue
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (name, (a - b).abs().max())
    assert not torch.equal(reference.src_embed.weight, model().src_embed.weight)  # it did train
