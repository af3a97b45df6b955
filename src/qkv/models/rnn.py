"""Recurrent encoder-decoder baselines: the models the Transformer replaced (§1, §2 and Table 1 of the paper).

Legend: B batch, S source length, T target length, E d_embed, H d_hidden, L layers, V vocabulary size.

``arch="rnn"`` — Sutskever, Vinyals & Le (2014), "Sequence to Sequence Learning with Neural Networks".
A multi-layer LSTM reads the source (reversed, their §3.3); its final state of every layer initialises a
multi-layer LSTM decoder. No attention: the whole sentence passes through one fixed-size state::

    (h_0, c_0) = LSTM_enc(E x_S, …, E x_1)           final (h, c) of each of the L layers
    s_t = LSTM_dec(E y_{t-1}, s_{t-1})
    logits_t = W_o s_t

``arch="rnn-attention"`` — Bahdanau, Cho & Bengio (2015), "Neural Machine Translation by Jointly Learning to
Align and Translate" (RNNsearch). A bidirectional GRU writes one annotation per source token; the decoder
attends over them with an additive alignment model before each step::

    h_j = [→h_j ; ←h_j]                              annotations, (B, S, 2H)               (§3.2)
    s_0 = tanh(W_s ←h_1)                             (Appendix A.2.2)
    e_tj = vᵀ tanh(W_a s_{t-1} + U_a h_j)            alignment scores                       (Eq. 6)
    α_tj = softmax_j(e_tj)                           over the real source tokens only
    c_t = Σ_j α_tj h_j                               context vector                         (Eq. 5)
    s_t = GRU([E y_{t-1} ; c_t], s_{t-1})            context fed with the input embedding   (Eq. 4)
    logits_t = W_o maxout(U_o s_t + V_o E y_{t-1} + C_o c_t)     deep output              (Appendix A.2.2)

Both models have the interface of :class:`qkv.Transformer` (``encode``, ``src_mask``, ``decode``,
``new_cache``, ``forward``, ``log_probs``, ``num_parameters``, ``config``), so the same training loop,
greedy/beam search and scoring run on them unchanged. What ``memory`` holds:

- ``rnn``: ``(B, 1, 2·L·H)`` (``2·L·2H`` bidirectional), the encoder's final ``(h, c)`` of every layer
  flattened into one vector per
  sentence (the fixed-size bottleneck of Sutskever et al.); ``memory_mask`` is accepted and ignored.
- ``rnn-attention``: ``(B, S, 2H)`` (``H`` one-way), the annotations; ``memory_mask`` ``(B, 1, 1, S)`` hides
  the padding.

Bidirectional or not (``RNNConfig.bidirectional``, flagged options beside each paper's choice):

- ``rnn`` with ``bidirectional=True``: a bidirectional LSTM reads the source both ways (not reversed) and each
  layer's final forward and backward states are concatenated, ``h = [→h_S ; ←h_1]`` (and the same for c), so
  the decoder LSTM is ``2H`` wide and starts from exactly those concatenated states (no bridge layer).
- ``rnn-attention`` with ``bidirectional=False``: a one-way GRU writes the annotations ``h_j = →h_j`` ``(B, S,
  H)`` and the decoder starts from ``s_0 = tanh(W_s →h_S)``, the state after the last real source token.

Memory is a plain tensor, so beam search can expand and reorder it with ``index_select(0, …)``. The decoder's
initial state is computed *from memory* on the first :meth:`decode` call of a fresh :class:`RNNCache` (or on
every call without a cache), and then lives in the cache, which ``reorder`` keeps in step with the beams.

Padding never changes a result: the encoders run on packed sequences (``pack_padded_sequence``), the
alignment softmax is masked, and the decoders are causal. Sources must be right-padded with ``pad_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from qkv.config import ConfigError, ConfigMixin, check, check_fractions, check_positive_ints, config_preset, is_int
from qkv.models.transformer import AttentionMaps
from qkv.nn.embedding import check_token_ids
from qkv.nn.masks import padding_mask

ARCHS = ("rnn", "rnn-attention")
INITS = ("paper", "pytorch")

# PyTorch's default initialisation (flagged): the papers' U(±0.08) / N(0, 0.01²) barely moves under Adam in
# the few thousand steps of a Multi30k run.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(d_embed=64, d_hidden=128, n_layers=1, dropout=0.0, init="pytorch"),
    "small": dict(d_embed=256, d_hidden=512, n_layers=2, dropout=0.3, init="pytorch"),
    "base": dict(d_embed=512, d_hidden=1024, n_layers=2, dropout=0.3, init="pytorch"),
}


@dataclass(frozen=True)
class RNNConfig(ConfigMixin):
    """Hyper-parameters of the recurrent baselines (defaults: small, CPU-friendly sizes).

    Args:
        arch: ``"rnn"`` (Sutskever et al. 2014: LSTM encoder-decoder, no attention) or ``"rnn-attention"``
            (Bahdanau et al. 2015: bidirectional GRU encoder, additive attention, GRU decoder).
        src_vocab_size, tgt_vocab_size: vocabulary sizes.
        d_embed: embedding size E (Sutskever: 1000, Bahdanau: 620).
        d_hidden: recurrent state size H per direction (Sutskever: 1000, Bahdanau: 1000). The attention
            model's annotations are 2H wide, its alignment model has H hidden units.
        n_layers: recurrent layers L in the encoder and in the decoder (Sutskever: 4, Bahdanau: 1).
        dropout: dropout on embeddings, between layers and before the output layer (neither paper used it;
            0 reproduces them).
        pad_id: padding token id.
        reverse_source: read the source backwards (Sutskever et al. §3.3). ``None`` means the paper's choice:
            True for ``rnn``; the bidirectional ``rnn-attention`` encoder does not reverse (must be False).
        init: ``"paper"`` (each paper's initialisation, see ``reset_parameters``) or ``"pytorch"`` (flagged
            option: PyTorch's default initialisation of each layer). The papers' small initial weights were
            tuned for days of SGD/Adadelta; with Adam on a small task ``"pytorch"`` learns far faster.
        bidirectional: whether the encoder reads the source both ways. ``None`` means the paper's choice:
            False for ``rnn`` (Sutskever: one way, reversed), True for ``rnn-attention`` (Bahdanau). The other
            value is a flagged option (see the module docstring for how the decoder then starts).

    Example:
        >>> cfg = RNNConfig("rnn-attention", src_vocab_size=100, tgt_vocab_size=100, d_hidden=32)
        >>> RNNConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    arch: str
    src_vocab_size: int
    tgt_vocab_size: int
    d_embed: int = 256
    d_hidden: int = 512
    n_layers: int = 2
    dropout: float = 0.2
    pad_id: int = 0
    reverse_source: bool | None = None
    init: str = "paper"
    bidirectional: bool | None = None

    def __post_init__(self) -> None:
        check(self.arch in ARCHS, f"arch must be one of {ARCHS}, got {self.arch!r}")
        check_positive_ints(self, ("src_vocab_size", "tgt_vocab_size", "d_embed", "d_hidden", "n_layers"))
        check_fractions(self, ("dropout",))
        check(
            is_int(self.pad_id) and 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size),
            f"pad_id {self.pad_id!r} is outside the vocabulary",
        )
        check(
            self.reverse_source in (None, True, False),
            f"reverse_source must be true, false or null, got {self.reverse_source!r}",
        )
        check(
            not (self.arch == "rnn-attention" and self.reverse_source),
            "reverse_source=True is only for arch='rnn'; the attention model reads the source both ways",
        )
        check(self.init in INITS, f"init must be one of {INITS}, got {self.init!r}")
        check(
            self.bidirectional in (None, True, False),
            f"bidirectional must be true, false or null, got {self.bidirectional!r}",
        )
        check(
            not (self.bidirectional_encoder and self.reverse_source),
            "reverse_source=True needs a one-way encoder (bidirectional=False): a bidirectional one reads both ways",
        )

    @property
    def reverses_source(self) -> bool:
        """Whether the encoder reads the source backwards (resolves ``reverse_source=None``)."""
        if self.reverse_source is None:
            return self.arch == "rnn" and not self.bidirectional_encoder
        return self.reverse_source

    @property
    def bidirectional_encoder(self) -> bool:
        """Whether the encoder reads the source both ways (resolves ``bidirectional=None``)."""
        return self.arch == "rnn-attention" if self.bidirectional is None else self.bidirectional

    @property
    def directions(self) -> int:
        """1 or 2: how many directions the encoder reads (the width factor of its states)."""
        return 2 if self.bidirectional_encoder else 1

    @classmethod
    def preset(cls, name: str, arch: str, **overrides: Any) -> Self:
        """A named preset (``tiny``, ``small``, ``base``) of ``arch`` with overrides, e.g. vocabulary sizes."""
        return config_preset(cls, PRESETS, name, {**overrides, "arch": arch}, "RNN")


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


def build_rnn(config: RNNConfig | dict[str, Any]) -> RNNEncoderDecoder:
    """The baseline named by ``config.arch`` (a config or its ``to_dict()``).

    Example:
        >>> build_rnn({"arch": "rnn", "src_vocab_size": 20, "tgt_vocab_size": 20, "d_hidden": 8}).config.arch
        'rnn'
    """
    if isinstance(config, dict):
        config = RNNConfig.from_dict(config)
    if config.arch == "rnn":
        return LSTMEncoderDecoder(config)
    return AttentionGRUEncoderDecoder(config)


__all__ = [
    "ARCHS",
    "INITS",
    "AdditiveAttention",
    "AttentionGRUEncoderDecoder",
    "LSTMEncoderDecoder",
    "RNNCache",
    "RNNConfig",
    "RNNEncoderDecoder",
    "build_rnn",
]
