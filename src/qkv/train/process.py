"""What the ``qkv`` command does to its process before any work, and the benchmarks do alike for every side.

Two settings that cost memory for speed on a CPU, each in its own module: freed memory stays in the process
(:func:`qkv.train.memory.keep_freed_memory`) and oneDNN keeps more compiled kernels
(:func:`qkv.train.kernel_cache.cache_more_kernels`). A value set in the environment wins over either.
"""

from __future__ import annotations

from qkv.train.kernel_cache import cache_more_kernels
from qkv.train.memory import keep_freed_memory


def set_up_process() -> dict[str, bool]:
    """Apply both settings (call before the first tensor operation); returns which ones were applied.

    Example:
        >>> set_up_process()                                     # doctest: +SKIP
        {'keep_freed_memory': True, 'cache_more_kernels': True}
    """
    return {"keep_freed_memory": keep_freed_memory(), "cache_more_kernels": cache_more_kernels()}
