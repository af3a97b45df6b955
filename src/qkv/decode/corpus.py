"""Decoding a whole corpus: sentences sorted by length into batches, greedy or beam, results in input order."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from qkv.data.batching import collate
from qkv.decode.beam import beam_search
from qkv.decode.greedy import greedy_search


def decode_corpus(
    model: nn.Module,
    sources: Sequence[Sequence[int]],
    *,
    beam_size: int = 1,
    alpha: float = 0.6,
    max_len_b: int = 50,
    batch_size: int = 64,
) -> list[list[int]]:
    """Decode many sentences: sorted by length into batches of ``batch_size`` (little padding), greedy for
    ``beam_size == 1`` else beam search; the results come back in input order.

    Args:
        sources: source token ids per sentence, without EOS (appended here, as in training).
    """
    device = next(model.parameters()).device
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))  # similar lengths together
    out: list[list[int]] = [[] for _ in sources]
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        src = collate([(sources[i], []) for i in chunk]).src.to(device)  # (B, S)
        if beam_size <= 1:
            hyps = greedy_search(model, src, max_len_b=max_len_b)
        else:
            hyps = beam_search(model, src, beam_size=beam_size, alpha=alpha, max_len_b=max_len_b)
        for i, ids in zip(chunk, hyps):
            out[i] = ids
    return out
