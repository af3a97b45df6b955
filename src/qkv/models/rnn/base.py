"""What both recurrent baselines share: the cache, packed-sequence helpers and the common interface.

Legend: B batch, S source length, T target length, E d_embed, H d_hidden, L layers, V vocabulary size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from qkv.models.rnn.config import RNNConfig
from qkv.models.transformer import AttentionMaps
from qkv.nn.masks import padding_mask


@dataclass
class RNNCache:
    """Incremental-decoding state of the recurrent decoders (passed in and out; never stored on the model).

    Fields are ``None`` until the first :meth:`decode` call, which computes the initial state from memory.

    - ``h``: ``(L, B, H)`` hidden state of every decoder layer after the tokens consumed so far.
    - ``c``: ``(L, B, H)`` LSTM cell state (``rnn`` only).
    - ``keys``: ``(B, S, H)`` the projected annotations ``U_a h_j`` (``rnn-attention`` only), computed once.
    - ``offset``: number of target tokens consumed.
    """

    h: Tensor | None = None
    c: Tensor | None = None
    keys: Tensor | None = None
    offset: int = 0

    def reorder(self, index: Tensor) -> None:
        """Keep/reorder batch rows (beam search): ``index`` ``(B_new,)`` into the current batch."""
        if self.h is not None:
            self.h = self.h.index_select(1, index)  # (L, B_new, H)
        if self.c is not None:
            self.c = self.c.index_select(1, index)
        if self.keys is not None:
            self.keys = self.keys.index_select(0, index)  # (B_new, S, H)


def source_lengths(src: Tensor, pad_id: int) -> Tensor:
    """Real tokens per row of a right-padded ``src`` ``(B, S)`` -> ``(B,)``; refuses inner padding."""
    real = src != pad_id  # (B, S)
    after_padding = real[:, 1:] & ~real[:, :-1]  # (B, S-1): a real token right after a padding token
    if after_padding.any():
        rows = torch.nonzero(after_padding.any(dim=1)).flatten().tolist()
        raise ValueError(
            f"src must be right-padded with pad_id={pad_id} (padding only at the end), but rows {rows[:5]} "
            "have a real token after padding"
        )
    return real.sum(dim=1)


def reverse_padded(tokens: Tensor, lengths: Tensor) -> Tensor:
    """Reverse the real tokens of every row of ``(B, S)``, leaving the padding at the end."""
    positions = torch.arange(tokens.shape[1], device=tokens.device)[None, :]  # (1, S)
    index = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)  # (B, S)
    return tokens.gather(1, index)


def run_packed(rnn: nn.RNNBase, x: Tensor, lengths: Tensor):
    """Run ``rnn`` (batch-first) over ``x`` ``(B, S, E)`` skipping the padding; padded outputs are zero.

    Returns ``(outputs (B, S, dirs·H), final_state)`` where the final state is taken at each row's last real
    token. Rows of length 0 (all padding) read one padding token, so that they get a state at all.
    """
    packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
    out, state = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, S, dirs·H)
    return out, state


class RNNEncoderDecoder(nn.Module):
    """What both baselines share: masks, checks, the teacher-forced ``forward`` and bookkeeping.

    Subclasses implement ``encode`` and ``decode`` (see the module docstring for the equations).
    """

    config: RNNConfig

    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_embed, padding_idx=c.pad_id)
        self.tgt_embed = nn.Embedding(c.tgt_vocab_size, c.d_embed, padding_idx=c.pad_id)
        self.dropout = nn.Dropout(c.dropout)

    # -- masks and checks ---------------------------------------------------------------------------------
    def src_mask(self, src: Tensor) -> Tensor:
        """Key-padding mask of the source, ``(B, 1, 1, S)`` bool (True = real token), as the Transformer's."""
        return padding_mask(src, self.config.pad_id)

    def _check_memory(self, memory: Tensor, width: int) -> None:
        if memory.dim() != 3 or memory.shape[-1] != width:
            raise ValueError(
                f"memory must be (B, S, {width}) as returned by {type(self).__name__}.encode, "
                f"got {tuple(memory.shape)}"
            )

    # -- the shared entry points ----------------------------------------------------------------------------
    def forward(self, src: Tensor, tgt: Tensor, return_attention: bool = False):
        """Teacher-forced pass: logits ``(B, T, V)`` for next-token prediction at every target position.

        With ``return_attention=True`` returns ``(logits, AttentionMaps)``; ``cross`` holds one tensor
        ``(B, 1, T, S)`` (the alignment α, one "head") for ``rnn-attention`` and is empty for ``rnn``.
        """
        src_mask = self.src_mask(src)  # (B, 1, 1, S)
        memory = self.encode(src, src_mask)
        if not return_attention:
            return self.decode(tgt, memory, src_mask)
        logits, self_maps, cross_maps = self.decode(tgt, memory, src_mask, return_attention=True)
        return logits, AttentionMaps(encoder_self=[], decoder_self=self_maps, cross=cross_maps)

    def new_cache(self) -> RNNCache:
        """An empty incremental-decoding cache for :meth:`decode`."""
        return RNNCache()

    @staticmethod
    def log_probs(logits: Tensor) -> Tensor:
        """log softmax over the vocabulary, as :meth:`qkv.Transformer.log_probs`."""
        return torch.log_softmax(logits.float(), dim=-1)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters())

    def reset_parameters(self) -> None:
        """Initialise every weight: the paper's scheme (``init="paper"``, in the subclass) or PyTorch's."""
        if self.config.init == "paper":
            self._paper_init()
        else:
            for module in self.modules():
                if module is not self and hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        with torch.no_grad():
            self.src_embed.weight[self.config.pad_id].zero_()
            self.tgt_embed.weight[self.config.pad_id].zero_()

    def _paper_init(self) -> None:
        raise NotImplementedError
