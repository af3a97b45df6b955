"""Greedy decoding, and the pieces every search shares (§6.1).

Legend: B batch (sentences), S source length, T target length, D d_model, V target vocabulary size.

Decoding works on any encoder-decoder with the core interface of :class:`qkv.Transformer`, so the RNN
baselines reuse it::

    memory = model.encode(src)                      # (B, S, D)
    mask   = model.src_mask(src)                    # (B, 1, 1, S) bool
    cache  = model.new_cache()                      # .reorder(index), .offset
    logits = model.decode(tgt_new, memory, mask, cache=cache)   # (B, t, V)

With ``use_cache=True`` each step feeds only the newest token and the cache holds the keys/values of the
earlier ones; with ``use_cache=False`` the decoder re-reads the whole prefix every step (the same numbers,
slower: it is what the benchmark compares against).

The output length is bounded as in §6.1: "maximum output length to input length + 50", where the input length
counts the source tokens that are not padding (the EOS appended to the source included).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from qkv.data.tokenizer import BOS, EOS, PAD  # the library's special ids (UNK = 3 is an ordinary output)
from qkv.nn.embedding import check_token_ids


def max_output_lengths(model: nn.Module, src: Tensor, max_len_b: int) -> Tensor:
    """Per-sentence output limit ``(B,)``: source length (non-PAD tokens) + ``max_len_b`` (§6.1).

    It is also capped at ``model.config.max_len`` when the model has one: producing L tokens feeds the decoder
    L positions (BOS and the first L - 1 tokens).
    """
    if max_len_b < 0:
        raise ValueError(f"max_len_b must be >= 0, got {max_len_b}")
    limits = (src != PAD).sum(dim=1) + max_len_b  # (B,)
    model_max = getattr(getattr(model, "config", None), "max_len", None)
    if model_max is not None:
        limits = limits.clamp(max=model_max)
    return limits


@dataclass
class SearchStart:
    """What greedy and beam search start from: the output buffer and the encoded sentences that get a token.

    ``out`` ``(B, 1 + T)`` holds BOS then PAD (T = the longest output limit, ``steps``); ``active`` ``(A,)``
    indexes the sentences whose limit allows at least one token, and ``limits`` ``(A,)``, ``memory``
    ``(A, S, D)`` and ``memory_mask`` ``(A, 1, 1, S)`` are theirs (``None`` when ``steps`` is 0).
    """

    out: Tensor
    active: Tensor
    limits: Tensor
    memory: Tensor | None
    memory_mask: Tensor | None
    steps: int


def start_search(model: nn.Module, src: Tensor, max_len_b: int) -> SearchStart:
    """Output limits (§6.1), the result buffer, and the encoder output of the sentences that get a token."""
    limits = max_output_lengths(model, src, max_len_b)  # (B,)
    steps = int(limits.max())  # one host sync, before the loop
    out = torch.full((src.shape[0], steps + 1), PAD, dtype=torch.long, device=src.device)  # (B, 1 + T)
    out[:, 0] = BOS
    active = (limits > 0).nonzero().squeeze(1)  # (A,)
    if steps == 0:
        return SearchStart(out, active, limits, None, None, 0)
    src = src.index_select(0, active)  # (A, S)
    return SearchStart(out, active, limits.index_select(0, active), model.encode(src), model.src_mask(src), steps)


def next_token_logits(
    model: nn.Module, tokens: Tensor, step: int, memory: Tensor, memory_mask: Tensor, cache
) -> Tensor:
    """Float logits of y_{step+1} given y_<=step and x, ``(B, V)``, for every row of ``tokens`` ``(B, >step)``.

    ``tokens[:, 0]`` is BOS and ``tokens[:, 1 : step + 1]`` the tokens chosen so far. With a cache only the
    newest token is fed; without one the whole prefix is. PAD and BOS are never valid outputs: their logits
    are set to -inf so no search can choose them.

    The softmax of §3.4 is left to the caller: greedy search needs only the argmax, which the softmax does not
    change; beam search takes the log-softmax.
    """
    if cache is not None:
        logits = model.decode(tokens[:, step : step + 1], memory, memory_mask, cache=cache)  # (B, 1, V)
    else:
        logits = model.decode(tokens[:, : step + 1], memory, memory_mask)  # (B, step + 1, V)
    logits = logits[:, -1].float()  # (B, V)
    logits[:, PAD] = -torch.inf
    logits[:, BOS] = -torch.inf
    return logits


def strip_specials(rows: list[list[int]]) -> list[list[int]]:
    """Token ids per sentence without BOS, PAD, and without EOS and anything after it."""
    out = []
    for row in rows:
        ids = []
        for token in row:
            if token == EOS:
                break
            if token not in (PAD, BOS):
                ids.append(token)
        out.append(ids)
    return out


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) and no autograd while decoding; the model's training flag is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def greedy_search(
    model: nn.Module, src: Tensor, *, max_len_b: int = 50, use_cache: bool = True
) -> list[list[int]]:
    """Greedy decoding: at every step take the most probable next token, argmax_y p(y | y_<t, x).

    Batched: all sentences advance together. A sentence that emitted EOS (or reached its maximum length)
    leaves the batch — its rows of the tokens, the encoder output and the decoder cache are dropped — so the
    later steps compute only the sentences still being written. One host sync per step (how many finished).

    Args:
        model: an encoder-decoder with ``encode``, ``src_mask``, ``new_cache`` and ``decode`` (see module).
        src: ``(B, S)`` source token ids, right-padded with PAD (0), usually ending in EOS.
        max_len_b: at most ``source length + max_len_b`` tokens are generated per sentence, EOS included
            (§6.1 uses 50).
        use_cache: feed one token per step and reuse cached keys/values (``True``), or re-run the decoder on
            the whole prefix every step (``False``; same output, slower).

    Returns:
        One list of token ids per sentence, without BOS, EOS or PAD.

    Example:
        >>> cfg = TransformerConfig.preset("tiny", src_vocab_size=20, tgt_vocab_size=20)
        >>> out = greedy_search(Transformer(cfg), torch.tensor([[5, 6, 7, 2]]), max_len_b=3)
        >>> len(out), len(out[0]) <= 4 + 3
        (1, True)
    """
    check_token_ids("src", src)
    if src.shape[0] == 0:
        return []
    with evaluating(model):
        start = start_search(model, src, max_len_b)
        out, active, limits, max_steps = start.out, start.active, start.limits, start.steps
        if max_steps == 0:
            return strip_specials(out[:, 1:].tolist())
        memory, memory_mask = start.memory, start.memory_mask  # (A, S, D), (A, 1, 1, S)
        tokens = out.index_select(0, active)  # (A, 1 + T)
        cache = model.new_cache() if use_cache else None
        for step in range(max_steps):
            logits = next_token_logits(model, tokens, step, memory, memory_mask, cache)  # (A, V)
            next_token = logits.max(dim=-1).indices  # (A,): argmax (first on ties), `max` is faster on CPU
            tokens[:, step + 1] = next_token
            finished = (next_token == EOS) | (step + 1 >= limits)  # (A,)
            n_finished = int(finished.sum())  # the one host sync of the step
            if n_finished == 0:
                continue
            out[active[finished]] = tokens[finished]
            if n_finished == tokens.shape[0]:
                break
            keep = (~finished).nonzero().squeeze(1)  # (A',): drop the finished sentences from the batch
            tokens, limits, active = tokens[keep], limits[keep], active[keep]
            memory, memory_mask = memory.index_select(0, keep), memory_mask.index_select(0, keep)
            if cache is not None:
                cache.reorder(keep)
        return strip_specials(out[:, 1:].tolist())


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
    from qkv.decode.beam import beam_search
    from qkv.train.batching import collate

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
