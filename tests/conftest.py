"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$QKV_DATA`` or ``../shared/data`` beside the repository root."""
    return Path(os.environ.get("QKV_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data sets not found at {path} (set QKV_DATA or place ../shared/data beside the repo)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The whole session on one thread, module-scoped fixtures included (the models here are tiny: a thread
    pool costs more than it gives, and on a busy machine it can be many times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same seed."""
    torch.manual_seed(0)
