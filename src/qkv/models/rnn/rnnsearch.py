"""``arch="rnn-attention"``: Bahdanau, Cho & Bengio (2015), RNNsearch with additive attention.

Legend: B batch, S source length, T target length, E d_embed, H d_hidden, L layers, V vocabulary size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qkv.config import ConfigError
from qkv.models.rnn.base import RNNCache, RNNEncoderDecoder, run_packed, source_lengths
from qkv.models.rnn.config import RNNConfig
from qkv.nn.embedding import check_token_ids


class AdditiveAttention(nn.Module):
    """Bahdanau's alignment model, Eq. 6: ``e_tj = vᵀ tanh(W_a s_{t-1} + U_a h_j)``, softmax over j.

    Args:
        d_query: size of the decoder state s (H).
        d_key: size of the annotations h_j (2H).
        d_attention: hidden units of the alignment model (n' in the paper).

    Shape:
        query ``(B, d_query)``, keys ``(B, S, d_attention)`` (= :meth:`project_keys` of the annotations,
        computed once per sentence), annotations ``(B, S, d_key)``, mask ``(B, S)`` bool ->
        context ``(B, d_key)``, weights ``(B, S)`` (zero on padding, summing to 1 over the real tokens).
    """

    def __init__(self, d_query: int, d_key: int, d_attention: int) -> None:
        super().__init__()
        self.query_proj = nn.Linear(d_query, d_attention, bias=False)  # W_a
        self.key_proj = nn.Linear(d_key, d_attention)  # U_a (its bias stands for the alignment MLP's bias)
        self.v = nn.Linear(d_attention, 1, bias=False)  # vᵀ

    def project_keys(self, annotations: Tensor) -> Tensor:
        return self.key_proj(annotations)  # (B, S, A) = U_a h_j for every j

    def forward(self, query: Tensor, keys: Tensor, annotations: Tensor, mask: Tensor | None):
        scores = self.v(torch.tanh(self.query_proj(query)[:, None, :] + keys)).squeeze(-1)  # (B, S) = e_tj
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)  # (B, S) = α_tj
        if mask is not None:
            weights = weights.masked_fill(~mask, 0.0)  # a row with no real token gets zeros, never NaN
        context = torch.bmm(weights[:, None, :], annotations).squeeze(1)  # (B, 2H) = Σ_j α_tj h_j
        return context, weights


class AttentionGRUEncoderDecoder(RNNEncoderDecoder):
    """Bahdanau et al. (2015), RNNsearch: bidirectional GRU encoder, additive attention, GRU decoder.

    With ``bidirectional=False`` (flagged option) the encoder GRU reads one way and the annotations are H wide.
    With ``n_layers > 1`` (flagged: the paper has one layer) both GRUs are stacked; the attention query is
    the top decoder layer's state and only the first decoder layer reads ``[E y_{t-1}; c_t]``.

    Args:
        config: an :class:`RNNConfig` with ``arch="rnn-attention"``.

    Shape:
        - src ``(B, S)``, tgt ``(B, T)`` right-padded token ids.
        - ``encode`` -> memory ``(B, S, 2H)``: the annotations ``[→h_j; ←h_j]`` (zero at padding); ``(B, S, H)``
          one-way.
        - ``decode`` / ``forward`` -> logits ``(B, T, V)``; alignment weights ``(B, 1, T, S)``.

    Example:
        >>> model = AttentionGRUEncoderDecoder(RNNConfig("rnn-attention", 50, 50, d_embed=16, d_hidden=32))
        >>> logits, maps = model(torch.randint(1, 50, (2, 7)), torch.randint(1, 50, (2, 5)), True)
        >>> logits.shape, maps.cross[0].shape
        (torch.Size([2, 5, 50]), torch.Size([2, 1, 5, 7]))
    """

    def __init__(self, config: RNNConfig) -> None:
        if config.arch != "rnn-attention":
            raise ConfigError(f"AttentionGRUEncoderDecoder needs arch='rnn-attention', got {config.arch!r}")
        super().__init__(config)
        c = config
        E, H, L = c.d_embed, c.d_hidden, c.n_layers
        between = c.dropout if L > 1 else 0.0
        A = c.directions * H  # width of an annotation: 2H (paper) or H one-way
        self.encoder = nn.GRU(E, H, L, batch_first=True, bidirectional=c.bidirectional_encoder, dropout=between)
        self.init_proj = nn.Linear(H, L * H)  # W_s: s_0 = tanh(W_s ←h_1), one slice per decoder layer
        self.attention = AdditiveAttention(d_query=H, d_key=A, d_attention=H)
        self.cells = nn.ModuleList(nn.GRUCell(E + A if i == 0 else H, H) for i in range(L))
        # Deep output (Appendix A.2.2): t = maxout(U_o s_t + V_o E y_{t-1} + C_o c_t), pool size 2, width E.
        self.readout = nn.Linear(H + E + A, 2 * E)
        self.generator = nn.Linear(E, c.tgt_vocab_size)  # W_o
        self.reset_parameters()

    def _paper_init(self) -> None:
        """Bahdanau et al. Appendix B.1: recurrent matrices orthogonal, W_a/U_a ~ N(0, 0.001²), v and biases
        zero, other weights ~ N(0, 0.01²)."""
        for name, p in self.named_parameters():
            if "bias" in name:
                nn.init.zeros_(p)
            elif "weight_hh" in name:
                for gate in p.data.chunk(3, dim=0):  # reset, update, new: one orthogonal H×H block each
                    nn.init.orthogonal_(gate)
            elif name.startswith("attention.v"):
                nn.init.zeros_(p)
            elif name.startswith("attention."):
                nn.init.normal_(p, std=0.001)
            else:
                nn.init.normal_(p, std=0.01)

    def encode(self, src: Tensor, src_mask: Tensor | None = None, return_attention: bool = False):
        """Encode ``src`` ``(B, S)`` -> annotations ``(B, S, 2H)`` (and ``[]``: no encoder attention maps)."""
        check_token_ids("src", src)
        lengths = source_lengths(src, self.config.pad_id)  # (B,)
        x = self.dropout(self.src_embed(src))  # (B, S, E)
        annotations, _ = run_packed(self.encoder, x, lengths)  # (B, S, 2H) = [→h_j ; ←h_j]
        return (annotations, []) if return_attention else annotations

    def _start(self, memory: Tensor, cache: RNNCache | None, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(s (L, B, H), keys (B, S, H))`` from the cache, or s_0 = tanh(W_s ←h_1) and U_a h_j.

        One-way, s_0 = tanh(W_s →h_S) with →h_S the annotation of the last real token (from ``mask`` ``(B, S)``;
        without a mask every position is taken as real)."""
        if cache is not None and cache.h is not None:
            return cache.h, cache.keys
        H, L = self.config.d_hidden, self.config.n_layers
        self._check_memory(memory, self.config.directions * H)
        if self.config.bidirectional_encoder:
            summary = memory[:, 0, H:]  # (B, H) = ←h_1, which has read the whole sentence
        else:
            last = memory.shape[1] - 1 if mask is None else mask.sum(-1).clamp(min=1) - 1  # (B,) or int
            rows = torch.arange(memory.shape[0], device=memory.device)
            summary = memory[rows, last]  # (B, H) = →h_S, the state after the last real token
        s0 = torch.tanh(self.init_proj(summary))  # (B, L·H)
        s0 = s0.view(-1, L, H).transpose(0, 1).contiguous()  # (L, B, H)
        return s0, self.attention.project_keys(memory)

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None = None,
        cache: RNNCache | None = None,
        return_attention: bool = False,
    ):
        """Decode ``tgt`` ``(B, T)`` attending over ``memory`` ``(B, S, 2H or H)`` -> logits ``(B, T, V)``.

        One GRU step per target token (the recurrence is sequential: T steps even with teacher forcing).
        With a cache, ``tgt`` holds only the new tokens and decoding continues from the cached state.
        ``memory_mask`` ``(B, 1, 1, S)`` bool (True = real token) hides the source padding from the alignment.
        With ``return_attention`` returns ``(logits, [], [alignment (B, 1, T, S)])``.
        """
        check_token_ids("tgt", tgt)
        b, src_len = memory.shape[0], memory.shape[1]
        mask = None
        if memory_mask is not None:
            if memory_mask.dtype != torch.bool or memory_mask.numel() != b * src_len:
                raise ValueError(
                    f"memory_mask must be bool (B, 1, 1, S) = {(b, 1, 1, src_len)}, got "
                    f"{memory_mask.dtype} {tuple(memory_mask.shape)}"
                )
            mask = memory_mask.reshape(b, src_len)  # (B, S)
        s, keys = self._start(memory, cache, mask)  # (L, B, H), (B, S, H)
        y = self.dropout(self.tgt_embed(tgt))  # (B, T, E)
        states, contexts, alignments = [], [], []
        layers = list(s.unbind(0))  # L × (B, H)
        for t in range(tgt.shape[1]):
            context, alpha = self.attention(layers[-1], keys, memory, mask)  # (B, 2H), (B, S); query s_{t-1}
            inp = torch.cat([y[:, t], context], dim=-1)  # (B, E + 2H): context fed with the input embedding
            for i, cell in enumerate(self.cells):
                layers[i] = cell(inp, layers[i])  # (B, H)
                inp = self.dropout(layers[i])
            states.append(layers[-1])
            contexts.append(context)
            alignments.append(alpha)
        s_t = torch.stack(states, dim=1)  # (B, T, H)
        c_t = torch.stack(contexts, dim=1)  # (B, T, 2H)
        if cache is not None:
            cache.h, cache.keys = torch.stack(layers, dim=0), keys  # (L, B, H)
            cache.offset += tgt.shape[1]
        t_out = self.readout(torch.cat([s_t, y, c_t], dim=-1))  # (B, T, 2E) = U_o s + V_o E y + C_o c
        t_out = t_out.view(*t_out.shape[:-1], -1, 2).amax(dim=-1)  # (B, T, E): maxout over pairs
        logits = self.generator(self.dropout(t_out))  # (B, T, V)
        if not return_attention:
            return logits
        alignment = torch.stack(alignments, dim=1)[:, None]  # (B, 1, T, S): one "head"
        return logits, [], [alignment]
