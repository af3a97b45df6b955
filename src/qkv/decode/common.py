"""The pieces every search shares (§6.1): output limits, the start, next-token logits, the result.

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

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from qkv.data.special import BOS, EOS, PAD  # UNK (3) is an ordinary output


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
