"""Decoding a whole corpus: sentences sorted by length into batches, greedy or beam, results in input order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

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
    on_batch: Callable[[int], Any] | None = None,
) -> list[list[int]]:
    """Decode many sentences: sorted by length into batches of ``batch_size`` (little padding), greedy for
    ``beam_size == 1`` else beam search; the results come back in input order.

    Args:
        sources: source token ids per sentence, without EOS (appended here, as in training).
        on_batch: called with the number of sentences of each decoded batch (e.g. a progress bar's ``update``).
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
        if on_batch is not None:
            on_batch(len(chunk))
    return out


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def open_progress(progress: Callable[..., Any] | None, **kwargs: Any) -> Any:
    """``progress(**kwargs)`` (a ``tqdm``-like factory: an object with ``update(n)`` and ``close()``), or an
    object that does nothing when ``progress`` is ``None``: library code never draws a bar of its own."""
    return progress(**kwargs) if progress is not None else _NoBar()
