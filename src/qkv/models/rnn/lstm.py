"""``arch="rnn"``: Sutskever, Vinyals & Le (2014), an LSTM encoder-decoder without attention.

Legend: B batch, S source length, T target length, E d_embed, H d_hidden, L layers, V vocabulary size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qkv.config import ConfigError
from qkv.models.rnn.base import RNNCache, RNNEncoderDecoder, reverse_padded, run_packed, source_lengths
from qkv.models.rnn.config import RNNConfig
from qkv.nn.embedding import check_token_ids


class LSTMEncoderDecoder(RNNEncoderDecoder):
    """Sutskever et al. (2014): an L-layer LSTM encoder whose final states initialise an L-layer LSTM decoder.

    Args:
        config: an :class:`RNNConfig` with ``arch="rnn"``.

    Shape:
        - src ``(B, S)``, tgt ``(B, T)`` right-padded token ids.
        - ``encode`` -> memory ``(B, 1, 2·L·H')``: final ``(h, c)`` of every encoder layer, ``H' = H`` one-way
          or ``2H`` bidirectional (``[→h_S ; ←h_1]``, which is also the decoder's width).
        - ``decode`` / ``forward`` -> logits ``(B, T, V)``.

    Example:
        >>> model = LSTMEncoderDecoder(RNNConfig("rnn", 50, 50, d_embed=16, d_hidden=32))
        >>> model(torch.randint(1, 50, (2, 7)), torch.randint(1, 50, (2, 5))).shape
        torch.Size([2, 5, 50])
    """

    def __init__(self, config: RNNConfig) -> None:
        if config.arch != "rnn":
            raise ConfigError(f"LSTMEncoderDecoder needs arch='rnn', got {config.arch!r}")
        super().__init__(config)
        c = config
        between = c.dropout if c.n_layers > 1 else 0.0
        bi = c.bidirectional_encoder
        self.encoder = nn.LSTM(c.d_embed, c.d_hidden, c.n_layers, batch_first=True, dropout=between, bidirectional=bi)
        self.decoder = nn.LSTM(c.d_embed, self.d_state, c.n_layers, batch_first=True, dropout=between)
        self.generator = nn.Linear(self.d_state, c.tgt_vocab_size)
        self.reset_parameters()

    def _paper_init(self) -> None:
        """Sutskever et al. §3.4: every parameter uniform in [-0.08, 0.08]."""
        for p in self.parameters():
            nn.init.uniform_(p, -0.08, 0.08)

    @property
    def d_state(self) -> int:
        """Width of one layer's state: H, or 2H for a bidirectional encoder (both directions concatenated)."""
        return self.config.directions * self.config.d_hidden

    @property
    def memory_width(self) -> int:
        return 2 * self.config.n_layers * self.d_state

    def encode(self, src: Tensor, src_mask: Tensor | None = None, return_attention: bool = False):
        """Encode ``src`` ``(B, S)`` -> memory ``(B, 1, 2·L·H)`` (and ``[]``: an LSTM has no attention maps).

        ``src_mask`` is accepted for interface compatibility; the lengths come from the padding in ``src``.
        """
        check_token_ids("src", src)
        lengths = source_lengths(src, self.config.pad_id)  # (B,)
        if self.config.reverses_source:
            src = reverse_padded(src, lengths)  # x_S … x_1, padding still at the end
        x = self.dropout(self.src_embed(src))  # (B, S, E)
        _, (h, c) = run_packed(self.encoder, x, lengths)  # 2 × (dirs·L, B, H), at each row's last real token
        b, L, dirs = src.shape[0], self.config.n_layers, self.config.directions
        # (dirs·L, B, H) -> (L, B, dirs·H): per layer [→h_S ; ←h_1] (PyTorch orders layer-major, forward first)
        h, c = (t.view(L, dirs, b, -1).transpose(1, 2).reshape(L, b, self.d_state) for t in (h, c))
        state = torch.cat([h, c], dim=0)  # (2L, B, H')
        memory = state.transpose(0, 1).reshape(b, 1, self.memory_width)  # (B, 1, 2LH')
        return (memory, []) if return_attention else memory

    def initial_state(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """The decoder's ``(h_0, c_0)``, each ``(L, B, H')``: the encoder's final states, from memory."""
        self._check_memory(memory, self.memory_width)
        b, L, H = memory.shape[0], self.config.n_layers, self.d_state
        state = memory[:, 0].reshape(b, 2 * L, H).transpose(0, 1)  # (B, 2LH) -> (2L, B, H)
        return state[:L].contiguous(), state[L:].contiguous()

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None = None,
        cache: RNNCache | None = None,
        return_attention: bool = False,
    ):
        """Decode ``tgt`` ``(B, T)`` from the encoder's state -> logits ``(B, T, V)``.

        Without a cache the decoder starts from the state in ``memory``; with one it continues from the
        cached state (initialised from ``memory`` on first use) and ``tgt`` holds only the new tokens.
        ``memory_mask`` is ignored (nothing attends). With ``return_attention`` returns ``(logits, [], [])``.
        """
        check_token_ids("tgt", tgt)
        if cache is not None and cache.h is not None:
            state = (cache.h, cache.c)
        else:
            state = self.initial_state(memory)
        x = self.dropout(self.tgt_embed(tgt))  # (B, T, E)
        out, (h, c) = self.decoder(x, state)  # (B, T, H)
        if cache is not None:
            cache.h, cache.c = h, c
            cache.offset += tgt.shape[1]
        logits = self.generator(self.dropout(out))  # (B, T, V)
        return (logits, [], []) if return_attention else logits
