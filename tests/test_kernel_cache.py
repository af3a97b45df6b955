"""qkv.train.kernel_cache: oneDNN keeps the kernels of many batch shapes (issue 17)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from qkv.train.kernel_cache import CAPACITY, ENV, cache_more_kernels
from qkv.train.process import set_up_process

# A fresh process: qkv's setting first, then six bf16 matrix products of different shapes, cycled three times.
CYCLE = """
import torch
from qkv.train.kernel_cache import cache_more_kernels
cache_more_kernels()
w = torch.randn(64, 64, dtype=torch.bfloat16)
shapes = [torch.randn(40 + 8 * i, 64, dtype=torch.bfloat16) for i in range(6)]
for _ in range(3):
    for x in shapes:
        x @ w
"""


def cache_counts(env: dict[str, str]) -> tuple[int, int]:
    """(hits, misses) of oneDNN's kernel cache for the matmuls of CYCLE run in ``env``, from its verbose log."""
    out = subprocess.run(
        [sys.executable, "-c", CYCLE], env={**env, "ONEDNN_VERBOSE": "all"},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lines = [line for line in out.splitlines() if "primitive,create:" in line and ",matmul," in line]
    return sum("cache_hit" in line for line in lines), sum("cache_miss" in line for line in lines)


def test_a_users_setting_stands(monkeypatch):
    monkeypatch.setenv(ENV, "64")
    assert cache_more_kernels() is False
    assert os.environ[ENV] == "64"


def test_set_up_process_sets_the_capacity(monkeypatch):
    # a private environment without the variable: what set_up_process writes does not outlive the test
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != ENV})
    assert set_up_process()["cache_more_kernels"] is True
    assert os.environ[ENV] == str(CAPACITY)
    with pytest.raises(ValueError, match="capacity"):
        cache_more_kernels(-1)


def test_the_enlarged_cache_keeps_kernels_a_small_one_rebuilds():
    env = {k: v for k, v in os.environ.items() if k != ENV}
    hits, misses = cache_counts({**env, ENV: "2"})  # the user's tiny cache stands: thrashing
    if hits + misses == 0:
        pytest.skip("bf16 matrix products do not go through oneDNN on this CPU")
    assert misses == 18 and hits == 0
    hits, misses = cache_counts(env)  # ours: built once per shape, then found
    assert misses == 6 and hits == 12
