"""Decoding a whole corpus: sentences sorted by length into batches, greedy or beam, results in input order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from torch import Tensor, nn

from qkv.data.batching import collate
from qkv.decode.beam import Hypothesis, beam_search, beam_search_nbest
from qkv.decode.greedy import greedy_search

R = TypeVar("R")


def _by_length(
    model: nn.Module, sources: Sequence[Sequence[int]], batch_size: int, search: Callable[[Tensor], list[R]],
    on_batch: Callable[[int], Any] | None = None,
) -> list[R]:
    """``search`` over batches of similar length (little padding); the results come back in input order."""
    device = next(model.parameters()).device
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))  # similar lengths together
    out: list = [None] * len(sources)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        src = collate([(sources[i], []) for i in chunk]).src.to(device)  # (B, S)
        for i, result in zip(chunk, search(src)):
            out[i] = result
        if on_batch is not None:
            on_batch(len(chunk))
    return out


def decode_corpus(
    model: nn.Module,
    sources: Sequence[Sequence[int]],
    *,
    beam_size: int = 1,
    alpha: float = 0.6,
    max_len_b: int = 50,
    batch_size: int = 64,
    on_batch: Callable[[int], Any] | None = None,
    early_stopping: bool = False,
) -> list[list[int]]:
    """Decode many sentences: sorted by length into batches of ``batch_size`` (little padding), greedy for
    ``beam_size == 1`` else beam search; the results come back in input order.

    Args:
        sources: source token ids per sentence, without EOS (appended here, as in training).
        on_batch: called with the number of sentences of each decoded batch (e.g. a progress bar's ``update``).
        early_stopping: the beam search's stopping rule (:func:`~qkv.decode.beam.beam_search`).
    """

    def search(src: Tensor) -> list[list[int]]:
        if beam_size <= 1:
            return greedy_search(model, src, max_len_b=max_len_b)
        return beam_search(
            model, src, beam_size=beam_size, alpha=alpha, max_len_b=max_len_b, early_stopping=early_stopping
        )

    return _by_length(model, sources, batch_size, search, on_batch)


def decode_corpus_nbest(
    model: nn.Module,
    sources: Sequence[Sequence[int]],
    *,
    nbest: int,
    beam_size: int = 5,
    alpha: float = 0.6,
    max_len_b: int = 50,
    batch_size: int = 64,
    early_stopping: bool = False,
) -> list[list[Hypothesis]]:
    """Like :func:`decode_corpus` with beam search, but the ``nbest`` best hypotheses of each sentence with
    their scores (see :func:`~qkv.decode.beam.beam_search_nbest`)."""

    def search(src: Tensor) -> list[list[Hypothesis]]:
        return beam_search_nbest(model, src, nbest=nbest, beam_size=beam_size, alpha=alpha, max_len_b=max_len_b,
                                 early_stopping=early_stopping)  # fmt: skip

    return _by_length(model, sources, batch_size, search)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def open_progress(progress: Callable[..., Any] | None, **kwargs: Any) -> Any:
    """``progress(**kwargs)`` (a ``tqdm``-like factory: an object with ``update(n)`` and ``close()``), or an
    object that does nothing when ``progress`` is ``None``: library code never draws a bar of its own."""
    return progress(**kwargs) if progress is not None else _NoBar()
