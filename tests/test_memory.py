"""qkv.train.memory: the command line keeps freed memory in the process (issue 17)."""

from __future__ import annotations

import resource
import sys

import pytest
import torch

from qkv.train.memory import ENV, keep_freed_memory


def test_a_users_malloc_settings_stand(monkeypatch):
    monkeypatch.setenv(ENV[0], "65536")
    assert keep_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt: Linux only")
def test_large_blocks_are_reused_not_faulted_in_again(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    assert keep_freed_memory() is True

    def faults_of_big_allocations() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            torch.empty(64 << 20, dtype=torch.uint8).fill_(1)  # 64 MB: above glibc's largest mmap threshold
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    for _ in range(3):  # the heap grows to its peak in the first rounds
        faults_of_big_allocations()
    # 5 × 64 MB fresh from the kernel would be 5 × 16,384 page faults (4 kB pages); reused, almost none
    assert faults_of_big_allocations() < 16_384
