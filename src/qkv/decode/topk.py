"""The best tokens of each row of a ``(B, V)`` score matrix, faster than ``max`` / ``topk`` over a large V.

Legend: B rows (sentences or beams), V vocabulary size, C chunk width, N chunks (V / C, rounded up), k tokens.

Every decoding step picks the best token(s) of each row over the whole vocabulary. On a CPU ``x.max(dim=-1)``
(value and index) and ``x.topk(k)`` walk the row one element at a time, while ``x.amax(dim=-1)`` (the value
only) is vectorized: several times faster. Both functions below use it in two stages: the maximum of every
chunk of C tokens, then the exact search inside the few chunks that can hold the answer. They return exactly
what ``max`` and ``topk`` return: a token in the top k is in one of the k chunks with the largest maxima.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

CHUNK = 64  # C: tokens per chunk (a few SIMD registers wide)
MIN_VOCAB = 1024  # below this, torch's own max / topk are as fast


def _chunks(x: Tensor) -> Tensor:
    """``x`` ``(B, V)`` as ``(B, N, C)``, the last chunk padded with -inf."""
    pad = (-x.shape[-1]) % CHUNK
    if pad:
        x = F.pad(x, (0, pad), value=-torch.inf)
    return x.view(x.shape[0], -1, CHUNK)  # (B, N, C)


def row_argmax(x: Tensor) -> Tensor:
    """The index of each row's maximum, the first one on ties: ``x.max(dim=-1).indices``, ``(B,)``.

    Example:
        >>> row_argmax(torch.tensor([[0.0, 2.0, 2.0], [5.0, 1.0, 0.0]]))
        tensor([1, 0])
    """
    if x.dim() != 2 or x.shape[-1] < MIN_VOCAB:
        return x.max(dim=-1).indices
    chunks = _chunks(x)  # (B, N, C)
    chunk_max = chunks.amax(dim=-1)  # (B, N)
    best = chunk_max.max(dim=-1)  # the first chunk holding the row's maximum, (B,)
    inside = chunks.gather(1, best.indices[:, None, None].expand(-1, 1, CHUNK)).squeeze(1)  # (B, C)
    return best.indices * CHUNK + inside.max(dim=-1).indices  # first maximum in that chunk


def row_topk(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k largest values of each row and their indices, largest first: ``x.topk(k, dim=-1)``, each ``(B, k)``.

    Example:
        >>> row_topk(torch.tensor([[0.0, 3.0, 1.0, 2.0]]), 2)
        (tensor([[3., 2.]]), tensor([[1, 3]]))
    """
    if x.dim() != 2 or x.shape[-1] < MIN_VOCAB or k * CHUNK * 4 > x.shape[-1]:
        return x.topk(k, dim=-1)
    chunks = _chunks(x)  # (B, N, C)
    best_chunks = chunks.amax(dim=-1).topk(k, dim=-1).indices.sort(dim=-1).values  # (B, k), in vocabulary order
    candidates = chunks.gather(1, best_chunks[:, :, None].expand(-1, -1, CHUNK)).view(x.shape[0], k * CHUNK)
    values, where = candidates.topk(k, dim=-1)  # (B, k) among the k·C candidates
    return values, best_chunks.gather(1, where // CHUNK) * CHUNK + where % CHUNK
