"""Beam search with the GNMT length penalty (§6.1: "a beam size of 4 and length penalty α = 0.6").

Legend: B batch (sentences), K beam size, S source length, T target length, D d_model, V vocabulary size.

All sentences × beams advance together as ``B·K`` decoder rows. Each step:

1. every live beam proposes its 2K most probable next tokens; the 2K best (beam, token) pairs of each sentence
   are kept, ranked by the summed log-probability log p(y_1..t | x);
2. a candidate ending in EOS that ranks among the top K becomes a *finished* hypothesis, scored with the
   length penalty of Wu et al. (2016, "GNMT"), which the paper's α refers to:

       score(Y) = log p(Y | x) / lp(Y),    lp(Y) = ((5 + |Y|) / 6)^α           (|Y| counts the final EOS)

   each sentence keeps its K best finished hypotheses;
3. the K best candidates that do not end in EOS are the new live beams: the token history and the decoder
   cache are reordered to follow them (``cache.reorder(index)``);
4. a sentence whose search is over leaves the batch (its K rows of tokens, memory and cache are dropped in
   the same reorder), so later steps compute only the sentences still searched.

The K beams of a sentence read the same encoder output: a model that says ``grouped_memory = True``
(:class:`qkv.Transformer`) receives it once per sentence and its cross-attention projects and stores the
source keys/values once, not K times; other models receive it repeated K times.

A sentence is done when it holds K finished hypotheses and no live beam beats the worst of them at the current
length, or when it reaches its maximum length (source length + ``max_len_b``; live beams are then finished
as they are). The bound at the current length is exact for α = 0 (log-probabilities only decrease) and the
usual heuristic for α > 0 (Hugging Face's ``early_stopping=False``); it keeps ``beam_size=1`` identical to
greedy decoding.

``early_stopping=True`` is the other common rule (not the paper's, which does not say): a sentence is done as
soon as it holds K finished hypotheses, whatever its live beams score (Hugging Face's ``early_stopping=True``,
fairseq's rule, CTranslate2's with a length penalty and its default ``patience=1``). It computes fewer decoder
rows and may miss a longer hypothesis that would have ranked first.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qkv.data.special import EOS, PAD
from qkv.decode.common import next_token_logits, start_search, strip_specials
from qkv.decode.topk import row_topk
from qkv.nn.embedding import check_token_ids
from qkv.nn.modes import eval_mode

#: a finished hypothesis: token ids (without BOS, EOS, PAD) and its length-normalized log-probability
Hypothesis = tuple[list[int], float]


def length_penalty(length: int | Tensor, alpha: float) -> float | Tensor:
    """The GNMT length penalty lp(Y) = ((5 + |Y|) / 6)^α (Wu et al. 2016, Eq. 14; used in §6.1 with α = 0.6).

    Dividing a (negative) log-probability by lp(Y) > 1 favours longer hypotheses; α = 0 disables it.

    Example:
        >>> length_penalty(1, 0.6), length_penalty(7, 1.0)
        (1.0, 2.0)
    """
    return ((5 + length) / 6) ** alpha


def beam_search(
    model: nn.Module,
    src: Tensor,
    *,
    beam_size: int = 5,
    alpha: float = 0.6,
    max_len_b: int = 50,
    use_cache: bool = True,
    early_stopping: bool = False,
) -> list[list[int]]:
    """Beam search (§6.1), batched over sentences × beams, returning the best hypothesis of each sentence.

    Args:
        model: an encoder-decoder with ``encode``, ``src_mask``, ``new_cache`` and ``decode``
            (see :mod:`qkv.decode.common`).
        src: ``(B, S)`` source token ids, right-padded with PAD (0), usually ending in EOS.
        beam_size: K, the number of live hypotheses per sentence (the paper uses 4 for translation, 21 for
            parsing). ``beam_size=1`` gives exactly :func:`~qkv.decode.greedy_search`'s output.
        alpha: α of the length penalty ((5 + |Y|) / 6)^α; 0 ranks by log-probability alone.
        max_len_b: at most ``source length + max_len_b`` tokens per sentence, EOS included.
        use_cache: incremental decoding with the KV cache (``True``) or re-running the whole prefix.
        early_stopping: a sentence is done once it holds K finished hypotheses (``True``: Hugging Face's
            ``early_stopping=True``, CTranslate2's rule), or only when no live beam can still beat them
            (``False``, the default; see the module).

    Returns:
        One list of token ids per sentence, without BOS, EOS or PAD.

    Example:
        >>> cfg = TransformerConfig.preset("tiny", src_vocab_size=20, tgt_vocab_size=20)
        >>> out = beam_search(Transformer(cfg), torch.tensor([[5, 6, 7, 2]]), beam_size=4, max_len_b=3)
        >>> len(out), len(out[0]) <= 4 + 3
        (1, True)
    """
    hyps = _search(model, src, beam_size, alpha, max_len_b, use_cache, nbest=1, early_stopping=early_stopping)
    return [best[0][0] for best in hyps]


def beam_search_nbest(
    model: nn.Module,
    src: Tensor,
    *,
    nbest: int,
    beam_size: int = 5,
    alpha: float = 0.6,
    max_len_b: int = 50,
    use_cache: bool = True,
    early_stopping: bool = False,
) -> list[list[Hypothesis]]:
    """Beam search returning the ``nbest`` best finished hypotheses of each sentence, best first.

    Args:
        nbest: how many hypotheses per sentence, 1 … ``beam_size`` (the search keeps K finished ones).
        model, src, beam_size, alpha, max_len_b, use_cache, early_stopping: as for :func:`beam_search`.

    Returns:
        Per sentence, up to ``nbest`` pairs ``(token ids without BOS/EOS/PAD, score)``, where the score is
        log p(Y | x) / lp(Y) (the length-normalized log-probability that ranks them); the first is
        :func:`beam_search`'s answer.

    Example:
        >>> cfg = TransformerConfig.preset("tiny", src_vocab_size=20, tgt_vocab_size=20)
        >>> out = beam_search_nbest(Transformer(cfg), torch.tensor([[5, 6, 7, 2]]), nbest=3, beam_size=4)
        >>> len(out[0]), out[0][0][1] >= out[0][1][1] >= out[0][2][1]
        (3, True)
    """
    if not isinstance(nbest, int) or not 1 <= nbest <= beam_size:
        raise ValueError(f"nbest must be an int in 1 … beam_size ({beam_size}), got {nbest!r}")
    return _search(model, src, beam_size, alpha, max_len_b, use_cache, nbest=nbest, early_stopping=early_stopping)


def _search(
    model: nn.Module, src: Tensor, beam_size: int, alpha: float, max_len_b: int, use_cache: bool, nbest: int,
    early_stopping: bool,
) -> list[list[Hypothesis]]:
    """The search itself: the ``nbest`` best finished hypotheses of each sentence with their scores."""
    check_token_ids("src", src)
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive int, got {beam_size!r}")
    if alpha < 0:
        raise ValueError(f"alpha (length penalty exponent) must be >= 0, got {alpha}")
    batch, k = src.shape[0], beam_size
    if batch == 0:
        return []
    results: list[list[Hypothesis]] = [[([], 0.0)] for _ in range(batch)]  # sentences without a token
    device = src.device
    with eval_mode(model):
        start = start_search(model, src, max_len_b)
        active, limits, max_steps = start.active, start.limits, start.steps
        if max_steps == 0:
            return results
        memory, memory_mask = start.memory, start.memory_mask  # (A, S, D), (A, 1, 1, S)
        width = max_steps + 1  # BOS + at most max_steps tokens
        grouped = getattr(model, "grouped_memory", False)
        if not grouped:
            memory, memory_mask = _repeat_rows(memory, k), _repeat_rows(memory_mask, k)  # (A·K, S, D), (A·K, …)

        tokens = start.out.index_select(0, active.repeat_interleave(k))  # (A·K, 1 + T): BOS, then PAD
        # Summed log-probabilities of the live beams. All beams start as the same empty prefix: keep only the
        # first alive, or the K beams would propose the same candidates K times.
        live_scores = torch.full((len(active), k), -torch.inf, device=device)  # (A, K)
        live_scores[:, 0] = 0.0
        # The K best finished hypotheses of each sentence: normalized scores and token rows.
        done_scores = torch.full((len(active), k), -torch.inf, device=device)  # (A, K)
        done_tokens = torch.full((len(active), k, width), PAD, dtype=torch.long, device=device)  # (A, K, 1 + T)
        rank = torch.arange(2 * k, device=device)  # (2K,)
        beam = torch.arange(k, device=device)  # (K,)
        cache = model.new_cache() if use_cache else None
        shortest_limit = int(limits.min())  # (host) no sentence reaches its maximum length before this step

        for step in range(max_steps):
            length = step + 1  # |Y| of every hypothesis that ends at this step
            n = len(active)
            logits = next_token_logits(model, tokens, step, memory, memory_mask, cache)  # (A·K, V)
            log_probs = torch.log_softmax(logits, dim=-1)  # (A·K, V) log p(token | beam, x), §3.4
            # 1. The 2K best (beam, token) continuations of each sentence, by summed log-probability.
            top_scores, top_tokens, top_parent = _top_candidates(log_probs, live_scores, k)  # each (A, 2K)

            # 2. EOS candidates in the top K finish (normalized by the length penalty).
            lp = length_penalty(length, alpha)
            is_eos = top_tokens == EOS  # (A, 2K)
            finishing = is_eos & (rank < k) & top_scores.isfinite()
            new_scores = torch.where(finishing, top_scores / lp, -torch.inf)  # (A, 2K)
            new_tokens = tokens.index_select(0, top_parent.view(-1)).view(n, 2 * k, width)  # (A, 2K, 1 + T)
            new_tokens[:, :, length] = EOS

            # 3. The K best non-EOS candidates are the new live beams (each beam proposes at most one EOS, so
            # at least K of the 2K are not EOS).
            pick = (rank + is_eos * 2 * k).argsort(dim=-1)[:, :k]  # (A, K) non-EOS first, in rank order
            live_scores = top_scores.gather(1, pick)  # (A, K)
            parent = top_parent.gather(1, pick).view(-1)  # (A·K,)
            tokens = tokens.index_select(0, parent)  # (A·K, 1 + T)
            tokens[:, length] = top_tokens.gather(1, pick).view(-1)

            # At its maximum length a sentence's live beams finish as they are (no EOS). The shortest limit is
            # known on the host, so the steps before it skip this entirely.
            at_limit = None
            if length >= shortest_limit:
                at_limit = length >= limits  # (A,)
                cutting = at_limit[:, None] & live_scores.isfinite()  # (A, K)
                new_scores = torch.cat([new_scores, torch.where(cutting, live_scores / lp, -torch.inf)], dim=1)
                new_tokens = torch.cat([new_tokens, tokens.view(n, k, width)], dim=1)  # (A, 3K, 1 + T)
            # Each sentence keeps its K best finished hypotheses.
            done_scores, done_tokens = _keep_best(done_scores, done_tokens, new_scores, new_tokens, k)

            # Done: K finished hypotheses and (unless early_stopping) no live beam beats the worst of them (at the
            # current length).
            finished = done_scores.isfinite().all(dim=-1)  # (A,)
            if not early_stopping:
                best_live = live_scores.max(dim=-1).values / lp  # (A,)
                finished &= best_live <= done_scores.min(dim=-1).values  # (A,)
            if at_limit is not None:
                finished |= at_limit
            n_finished = int(finished.sum())  # the one host sync of the step
            if n_finished:
                ended = finished.nonzero().squeeze(1)  # (F,)
                _collect(results, active[ended], done_tokens[ended, :nbest], done_scores[ended, :nbest])
                if n_finished == n:
                    break
                # Drop the finished sentences: their beams leave the batch, the decoder computes fewer rows.
                keep = (~finished).nonzero().squeeze(1)  # (A',)
                keep_rows = (keep[:, None] * k + beam).view(-1)  # (A'·K,)
                parent, tokens = parent.index_select(0, keep_rows), tokens.index_select(0, keep_rows)
                live_scores, limits, active = live_scores[keep], limits[keep], active[keep]
                done_scores, done_tokens = done_scores[keep], done_tokens[keep]
                memory_index = keep if grouped else keep_rows
                memory, memory_mask = memory.index_select(0, memory_index), memory_mask.index_select(0, memory_index)
                shortest_limit = int(limits.min())
            if cache is not None:
                cache.reorder(parent)  # the cache follows the beams (and loses the finished sentences)

        return results


def _repeat_rows(x: Tensor, k: int) -> Tensor:
    """Each row of ``x`` ``(A, …)`` K times, ``(A·K, …)``: the memory of a model without grouped cross-attention
    (qkv.Transformer takes one memory row for the K beams of a sentence)."""
    return x.index_select(0, torch.arange(x.shape[0], device=x.device).repeat_interleave(k))


def _top_candidates(log_probs: Tensor, live_scores: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The 2K best ``(beam, token)`` continuations of each sentence: their summed log-probabilities, tokens and
    parent rows (into the A·K beams), each ``(A, 2K)``, from ``log_probs`` ``(A·K, V)`` and ``live_scores``
    ``(A, K)``.

    Two stages (K·2K per sentence, then a stable sort) rather than one top-k over K·V: same result, and each
    beam's own ranking is never disturbed by rounding in the addition (so K = 1 is greedy).
    """
    n = live_scores.shape[0]
    per_beam = min(2 * k, log_probs.shape[-1])  # 2K, unless the vocabulary is smaller
    cand_lp, cand_token = row_topk(log_probs, per_beam)  # (A·K, 2K)
    cand_scores = (live_scores.view(-1, 1) + cand_lp).view(n, k * per_beam)  # (A, K·2K)
    order = cand_scores.sort(dim=-1, descending=True, stable=True).indices[:, : 2 * k]  # (A, 2K)
    top_scores = cand_scores.gather(1, order)  # (A, 2K)
    top_tokens = cand_token.view(n, k * per_beam).gather(1, order)  # (A, 2K)
    sentence_base = torch.arange(n, device=log_probs.device)[:, None] * k  # (A, 1): first row of each sentence
    return top_scores, top_tokens, order // per_beam + sentence_base  # parent: the row (in A·K) each extends


def _collect(results: list[list[Hypothesis]], rows: Tensor, tokens: Tensor, scores: Tensor) -> None:
    """Store the finished hypotheses ``tokens`` ``(F, n, 1 + T)`` (sorted by ``scores`` ``(F, n)``, best first)
    of the sentences ``rows`` ``(F,)``, leaving out empty (-inf) slots."""
    for row, toks, scs in zip(rows.tolist(), tokens.tolist(), scores.tolist()):
        kept = [(ids, sc) for ids, sc in zip(strip_specials([t[1:] for t in toks]), scs) if sc != -float("inf")]
        results[row] = kept or results[row]


def _keep_best(
    scores: Tensor, tokens: Tensor, new_scores: Tensor, new_tokens: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """Merge finished hypotheses (scores ``(B, K)``, tokens ``(B, K, W)``) with new ones ``(B, N)``,
    ``(B, N, W)``, and keep the K best of each sentence.

    Existing hypotheses come first, so on equal scores the earlier one is kept.
    """
    all_scores = torch.cat([scores, new_scores], dim=1)  # (B, K + N)
    all_tokens = torch.cat([tokens, new_tokens], dim=1)  # (B, K + N, W)
    keep = all_scores.sort(dim=-1, descending=True, stable=True).indices[:, :k]  # (B, K)
    width = tokens.shape[-1]
    return all_scores.gather(1, keep), all_tokens.gather(1, keep[:, :, None].expand(-1, -1, width))
