"""Caching more oneDNN kernels, so that batches of new shapes do not rebuild their matrix products every step.

On a CPU, PyTorch's bf16 matrix products run through oneDNN, which builds (JIT-compiles) a kernel, a
"primitive", for every new problem shape and keeps the last 1,024 in an LRU cache
(``ONEDNN_PRIMITIVE_CACHE_CAPACITY``). Length-bucketed batches have many shapes: one epoch of the
``cpu-en-de`` recipe (Multi30k, 3,072 tokens per batch) has 137 distinct (source, target) shapes, and a
training step of the small model runs about 40 distinct matrix products, some 5,500 kernels in all. They do
not fit, so every step rebuilds most of its kernels: a miss costs 0.2–20 ms (2.2 ms on average; the output
projection's gradient, 3,068 × 8,000 × 256, 20 ms), about 90 ms of a 360 ms step (``ONEDNN_VERBOSE=all``,
2 threads, AMX). With room for 16,384 kernels, the second epoch of those batches trained at 7,860 target
tokens/s instead of 5,770 (1.36×, one run each, same process layout; issue 17).

oneDNN reads the variable once, when it builds its first kernel, so :func:`cache_more_kernels` must run
before the process's first bf16 matrix product (the ``qkv`` command calls it first thing). A value the
environment already sets stands. The cost is memory for the compiled kernels (a 30-minute ``qkv train`` run
of the recipe peaked at 4.7–5.0 GB resident, docs/performance.md "Session 17").
"""

from __future__ import annotations

import os

#: the environment variable oneDNN reads its cache size from
ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
#: kernels kept: one epoch of a length-bucketed Multi30k recipe, its validation and beam search, with room
CAPACITY = 16384


def cache_more_kernels(capacity: int = CAPACITY) -> bool:
    """Let oneDNN keep ``capacity`` compiled kernels; True if set, False if the environment already says.

    Effective only before the process's first oneDNN matrix product.

    Example:
        >>> cache_more_kernels()                                 # doctest: +SKIP
        True
    """
    if capacity < 0:
        raise ValueError(f"capacity must be >= 0, got {capacity}")
    if ENV in os.environ:
        return False
    os.environ[ENV] = str(capacity)
    return True
