"""Attention masks: one convention for the whole library.

A mask is a **boolean** tensor where ``True`` means *this query may attend to this key* — the polarity of
:func:`torch.nn.functional.scaled_dot_product_attention`. It is broadcastable to ``(B, H, T_q, T_k)``.
Masks are built only here (:func:`padding_mask`, :func:`causal_mask`, :func:`local_mask`, :func:`combine_masks`) and
checked at the
boundary of attention by :func:`check_mask`, so a float mask, an inverted mask or a mask of the wrong shape is
refused with a message instead of silently attending to the wrong keys.

Legend: B batch, H heads, T_q query length, T_k key length.
"""

from __future__ import annotations

import torch
from torch import Tensor


class MaskError(ValueError):
    """A mask of the wrong dtype or shape was given to attention."""


def padding_mask(tokens: Tensor, pad_id: int) -> Tensor:
    """Key-padding mask from token ids: keys that are padding may not be attended to.

    Args:
        tokens: ``(B, T_k)`` integer token ids.
        pad_id: the id of the padding token.

    Returns:
        ``(B, 1, 1, T_k)`` bool, ``True`` where the key is a real token.

    Example:
        >>> padding_mask(torch.tensor([[5, 6, 0]]), pad_id=0)[0, 0, 0]
        tensor([ True,  True, False])
    """
    if tokens.dim() != 2:
        raise MaskError(f"padding_mask expects token ids of shape (B, T), got {tuple(tokens.shape)}")
    return (tokens != pad_id)[:, None, None, :]  # (B, 1, 1, T_k)


def lengths_mask(lengths: Tensor, max_len: int) -> Tensor:
    """Key-padding mask from sequence lengths: ``(B,)`` -> ``(B, 1, 1, max_len)``, True for positions < length."""
    positions = torch.arange(max_len, device=lengths.device)
    return (positions[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, T_k)


def causal_mask(t_q: int, t_k: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """Causal ("no peeking") mask of the decoder's self-attention (§3.2.3).

    Query ``i`` may attend to key ``j`` iff ``j <= i + (t_k - t_q)``: with ``t_k > t_q`` the queries are the
    *last* ``t_q`` positions of a sequence whose first ``t_k - t_q`` keys are cached (incremental decoding).

    Returns:
        ``(1, 1, T_q, T_k)`` bool.

    Example:
        >>> causal_mask(3)[0, 0].int()
        tensor([[1, 0, 0],
                [1, 1, 0],
                [1, 1, 1]], dtype=torch.int32)
    """
    t_k = t_q if t_k is None else t_k
    if t_k < t_q:
        raise MaskError(f"causal_mask needs t_k >= t_q (keys include the queries), got t_q={t_q}, t_k={t_k}")
    ones = torch.ones(t_q, t_k, dtype=torch.bool, device=device)
    return torch.tril(ones, diagonal=t_k - t_q)[None, None]  # (1, 1, T_q, T_k)


def local_mask(t_q: int, t_k: int | None = None, window: int = 1, device: torch.device | str | None = None) -> Tensor:
    """Local (windowed) attention mask: query ``i`` may attend to key ``j`` iff ``|j - i'| <= window``.

    Not in the paper (its attention is global: every query sees every key); the local attention of the notes,
    a band of width ``2·window + 1`` around each position. ``i' = i + (t_k - t_q)`` aligns the queries with the
    *last* ``t_q`` keys, as :func:`causal_mask` does, so incremental decoding with cached keys sees the same
    band as the full forward pass. Combine with :func:`causal_mask` (decoder self-attention: keys
    ``i - window … i``) and :func:`padding_mask` through :func:`combine_masks`.

    Args:
        t_q: query length.
        t_k: key length (default ``t_q``); must be ``>= t_q``.
        window: how many positions on each side may be attended to (0 = only the position itself).

    Returns:
        ``(1, 1, T_q, T_k)`` bool.

    Example:
        >>> local_mask(4, window=1)[0, 0].int()
        tensor([[1, 1, 0, 0],
                [1, 1, 1, 0],
                [0, 1, 1, 1],
                [0, 0, 1, 1]], dtype=torch.int32)
    """
    t_k = t_q if t_k is None else t_k
    if t_k < t_q:
        raise MaskError(f"local_mask needs t_k >= t_q (keys include the queries), got t_q={t_q}, t_k={t_k}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise MaskError(f"local_mask window must be an int >= 0, got {window!r}")
    rows = torch.arange(t_q, device=device)[:, None] + (t_k - t_q)  # (T_q, 1): i' of each query
    cols = torch.arange(t_k, device=device)[None, :]  # (1, T_k)
    return ((cols - rows).abs() <= window)[None, None]  # (1, 1, T_q, T_k)


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of masks (a key is allowed only if every mask allows it); ``None`` entries are skipped."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    out = present[0]
    for m in present[1:]:
        out = out & m  # broadcasts, e.g. (B, 1, 1, T_k) & (1, 1, T_q, T_k) -> (B, 1, T_q, T_k)
    return out


def check_mask(mask: Tensor, batch_shape: tuple[int, ...], t_q: int, t_k: int) -> None:
    """Refuse a mask that is not bool or not broadcastable to ``(*batch_shape, T_q, T_k)``."""
    if not isinstance(mask, Tensor):
        raise MaskError(f"mask must be a torch.Tensor of dtype bool, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise MaskError(
            f"mask must have dtype torch.bool (True = may attend), got {mask.dtype}; "
            "build masks with qkv.padding_mask / qkv.causal_mask / qkv.combine_masks"
        )
    target = (*batch_shape, t_q, t_k)
    if mask.dim() > len(target):
        raise MaskError(f"mask has {mask.dim()} dims, expected at most {len(target)} broadcastable to {target}")
    for got, want in zip(reversed(mask.shape), reversed(target)):
        if got not in (1, want):
            raise MaskError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to (..., T_q, T_k) = {target}"
            )
