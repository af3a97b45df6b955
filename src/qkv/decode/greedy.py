"""Greedy decoding (§6.1 with a beam of one): at every step the most probable next token.

Legend: B batch (sentences), A sentences still being written, S source length, T target length, D d_model,
V target vocabulary size.
"""

from __future__ import annotations

from torch import Tensor, nn

from qkv.data.special import EOS
from qkv.decode.common import next_token_logits, start_search, strip_specials
from qkv.decode.topk import row_argmax
from qkv.nn.embedding import check_token_ids
from qkv.nn.modes import eval_mode


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
    with eval_mode(model):
        start = start_search(model, src, max_len_b)
        out, active, limits, max_steps = start.out, start.active, start.limits, start.steps
        if max_steps == 0:
            return strip_specials(out[:, 1:].tolist())
        memory, memory_mask = start.memory, start.memory_mask  # (A, S, D), (A, 1, 1, S)
        tokens = out.index_select(0, active)  # (A, 1 + T)
        cache = model.new_cache() if use_cache else None
        for step in range(max_steps):
            logits = next_token_logits(model, tokens, step, memory, memory_mask, cache)  # (A, V)
            next_token = row_argmax(logits)  # (A,): argmax (first on ties)
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
