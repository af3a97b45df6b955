"""The encoder-decoder Transformer, §3 (Figure 1).

Legend: B batch, S source length, T target length, D d_model, H heads, V vocabulary size, L layers.

    memory = Encoder(PE(Embed(src)))                       N × [self-attention, FFN]        (§3.1)
    logits = Linear(Decoder(PE(Embed(tgt)), memory))       N × [masked self-attn, cross-attn, FFN]
    p(y_t | y_<t, x) = softmax(logits_t)                    (§3.4; applied by the loss and by decoding)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

import torch
from torch import Tensor, nn

from qkv.config import ConfigMixin, check, check_fractions, check_positive_ints, config_preset, is_int, is_number
from qkv.nn.attention import ATTENTIONS
from qkv.nn.dropout import Dropout
from qkv.nn.embedding import TokenEmbedding, check_token_ids
from qkv.nn.feedforward import ACTIVATIONS
from qkv.nn.init import INITS, normal_init_
from qkv.nn.layers import DecoderLayer, EncoderLayer, LayerCache
from qkv.nn.masks import combine_masks, local_mask, padding_mask
from qkv.nn.positional import LAYOUTS, PositionalEncoding

PRESETS: dict[str, dict[str, Any]] = {
    # Table 3 of the paper.
    "base": dict(d_model=512, n_heads=8, d_ff=2048, n_layers=6, dropout=0.1),
    "big": dict(d_model=1024, n_heads=16, d_ff=4096, n_layers=6, dropout=0.3),
    # For CPUs: a small model that trains on Multi30k in minutes, and a tiny one for tests and demos.
    "small": dict(d_model=256, n_heads=4, d_ff=1024, n_layers=3, dropout=0.1),
    "tiny": dict(d_model=64, n_heads=4, d_ff=256, n_layers=2, dropout=0.0),
}


@dataclass(frozen=True)
class TransformerConfig(ConfigMixin):
    """Hyper-parameters of the encoder-decoder Transformer (defaults: the base model of Table 3).

    Args:
        src_vocab_size, tgt_vocab_size: vocabulary sizes (equal when the vocabulary is shared).
        d_model: model width (512).
        n_heads: attention heads h (8); ``d_model % n_heads == 0``.
        d_ff: inner width of the feed-forward network (2048).
        n_layers: encoder layers N (6).
        n_decoder_layers: decoder layers; ``None`` means the same as ``n_layers``.
        dropout: residual and embedding dropout P_drop (§5.4).
        attention_dropout, activation_dropout: extra dropouts not in the paper (0 by default).
        activation: ``"relu"`` (paper), or the flagged deviations ``"gelu"`` and ``"swish"``/``"silu"`` (Marian).
        norm: ``"post"`` (paper) or ``"pre"`` (flagged deviation; adds a final LayerNorm to each stack).
        positional: ``"sinusoidal"`` (paper) or ``"learned"``.
        positional_layout: ``"interleaved"`` (paper: sin in even dims, cos in odd) or ``"half"`` (deviation,
            flagged: ``[sin | cos]``, as Marian / OPUS-MT and fairseq lay the same sinusoids out).
        scale_embeddings: multiply embeddings by √d_model (§3.4; True). ``False`` is a deviation, flagged (a
            Marian model with ``scale_embedding=False``).
        output_bias: a bias on the pre-softmax linear map (deviation, flagged: Marian's ``final_logits_bias``;
            the paper's output projection shares the embedding matrix and has none).
        max_len: most positions the model accepts.
        tie_embeddings: ``"none"``, ``"decoder"`` (target embedding = output projection) or ``"all"``
            (source and target embeddings and output projection share one matrix, §3.4; needs one vocabulary).
        pad_id: padding token id (masked out of attention, ignored by the loss).
        eps: LayerNorm epsilon.
        attention: ``"soft"`` (the paper, Eq. 1) or ``"hard"`` (flagged deviation: every head of every layer
            takes one-hot weights on its best key, trained with the straight-through estimator; see
            :func:`qkv.nn.attention.hard_attention_weights`). A checkpoint may be loaded with either.
        attention_window: ``None`` (the paper: global attention, every position sees every other) or ``w``
            (flagged deviation: local attention, :func:`qkv.nn.masks.local_mask`): the encoder
            self-attention sees positions ``i - w … i + w``, the decoder self-attention ``i - w … i``
            (with the causal mask). The cross-attention stays global: source and target positions do not
            correspond, so a window over ``|i - j|`` would cut the alignment.
        init: ``"paper"`` (each module's own initialisation, :mod:`qkv.nn.init`) or ``"normal"`` (flagged
            deviation, the BERT / Marian choice: every linear map and embedding from N(0, ``init_std``²),
            biases zero). It only sets the starting weights: a checkpoint loads the same either way.
        init_std: the standard deviation of ``init="normal"`` (0.02).
    """

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 2048
    n_layers: int = 6
    n_decoder_layers: int | None = None
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    activation: str = "relu"
    norm: str = "post"
    positional: str = "sinusoidal"
    max_len: int = 1024
    tie_embeddings: str = "all"
    pad_id: int = 0
    eps: float = 1e-5
    positional_layout: str = "interleaved"
    scale_embeddings: bool = True
    output_bias: bool = False
    attention: str = "soft"
    attention_window: int | None = None
    init: str = "paper"
    init_std: float = 0.02

    def __post_init__(self) -> None:
        check_positive_ints(
            self, ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "d_ff", "n_layers", "max_len")
        )
        check(
            self.d_model % self.n_heads == 0,
            f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})",
        )
        check(
            self.n_decoder_layers is None or (is_int(self.n_decoder_layers) and self.n_decoder_layers > 0),
            f"n_decoder_layers must be a positive int or None, got {self.n_decoder_layers!r}",
        )
        check_fractions(self, ("dropout", "attention_dropout", "activation_dropout"))
        check(
            self.activation in ACTIVATIONS,
            f"activation must be one of {'|'.join(ACTIVATIONS)}, got {self.activation!r}",
        )
        check(
            self.positional_layout in LAYOUTS,
            f"positional_layout must be one of {'|'.join(LAYOUTS)}, got {self.positional_layout!r}",
        )
        for name in ("scale_embeddings", "output_bias"):
            check(isinstance(getattr(self, name), bool), f"{name} must be true or false, got {getattr(self, name)!r}")
        check(self.norm in ("post", "pre"), f"norm must be post|pre, got {self.norm!r}")
        check(
            self.positional in ("sinusoidal", "learned"),
            f"positional must be sinusoidal|learned, got {self.positional!r}",
        )
        check(
            self.tie_embeddings in ("none", "decoder", "all"),
            f"tie_embeddings must be none|decoder|all, got {self.tie_embeddings!r}",
        )
        check(
            self.tie_embeddings != "all" or self.src_vocab_size == self.tgt_vocab_size,
            "tie_embeddings='all' needs a shared vocabulary (src_vocab_size == tgt_vocab_size), got "
            f"{self.src_vocab_size} and {self.tgt_vocab_size}",
        )
        check(
            is_int(self.pad_id) and 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size),
            f"pad_id must be an int inside the vocabulary [0, {min(self.src_vocab_size, self.tgt_vocab_size)}), "
            f"got {self.pad_id!r}",
        )
        check(
            is_number(self.eps) and self.eps > 0,
            f"eps must be a positive number, got {self.eps!r}",
        )
        check(self.attention in ATTENTIONS, f"attention must be soft|hard, got {self.attention!r}")
        check(
            self.attention_window is None or (is_int(self.attention_window) and self.attention_window >= 0),
            f"attention_window must be an int >= 0 or None (global), got {self.attention_window!r}",
        )
        check(self.init in INITS, f"init must be one of {'|'.join(INITS)}, got {self.init!r}")
        check(
            is_number(self.init_std) and self.init_std > 0,
            f"init_std must be a positive number, got {self.init_std!r}",
        )

    @property
    def decoder_layers(self) -> int:
        return self.n_layers if self.n_decoder_layers is None else self.n_decoder_layers

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Self:
        """A named preset (``base``, ``big``, ``small``, ``tiny``) with overrides, e.g. vocabulary sizes."""
        return config_preset(cls, PRESETS, name, overrides, "Transformer")


@dataclass
class AttentionMaps:
    """Every attention map of one forward pass, one tensor per layer (softmax weights, before dropout).

    - ``encoder_self[l]``: ``(B, H, S, S)`` encoder self-attention of layer l.
    - ``decoder_self[l]``: ``(B, H, T, T)`` decoder masked self-attention (zero above the diagonal).
    - ``cross[l]``: ``(B, H, T, S)`` decoder-to-encoder attention.
    """

    encoder_self: list[Tensor] = field(default_factory=list)
    decoder_self: list[Tensor] = field(default_factory=list)
    cross: list[Tensor] = field(default_factory=list)


@dataclass
class DecoderCache:
    """Incremental-decoding state: one :class:`LayerCache` per decoder layer and the next position."""

    layers: list[LayerCache]
    offset: int = 0

    def reorder(self, index: Tensor) -> None:
        """Keep/reorder batch rows (beam search): ``index`` ``(B_new,)`` into the current batch."""
        for layer in self.layers:
            layer.reorder(index)


def layer_kwargs(config: TransformerConfig) -> dict:
    return dict(
        d_model=config.d_model,
        n_heads=config.n_heads,
        d_ff=config.d_ff,
        dropout=config.dropout,
        attention_dropout=config.attention_dropout,
        activation_dropout=config.activation_dropout,
        activation=config.activation,
        norm=config.norm,
        eps=config.eps,
    )


def _final_norm(kwargs: dict) -> nn.LayerNorm | None:
    """The LayerNorm after a pre-LN stack (flagged option); ``norm``/``eps`` default as in the layers."""
    if kwargs.get("norm", "post") != "pre":
        return None
    return nn.LayerNorm(kwargs["d_model"], eps=kwargs.get("eps", 1e-5))


class Encoder(nn.Module):
    """A stack of N :class:`EncoderLayer` (§3.1); pre-LN adds a final LayerNorm (flagged option).

    Shape:
        x ``(B, S, D)`` (already embedded), mask broadcastable to ``(B, H, S, S)`` -> ``(B, S, D)`` and a list
        of L weight tensors ``(B, H, S, S)`` (empty unless ``need_weights``).
    """

    def __init__(self, n_layers: int, **kwargs) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(**kwargs) for _ in range(n_layers))
        self.final_norm = _final_norm(kwargs)

    def forward(self, x: Tensor, mask: Tensor | None = None, need_weights: bool = False):
        maps = []
        for layer in self.layers:
            x, w = layer(x, mask, need_weights)
            if need_weights:
                maps.append(w)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, maps


class Decoder(nn.Module):
    """A stack of N :class:`DecoderLayer` (§3.1); pre-LN adds a final LayerNorm (flagged option).

    Shape:
        x ``(B, T, D)``, memory ``(B, S, D)`` -> ``(B, T, D)``, self maps ``(B, H, T, T)`` and cross maps
        ``(B, H, T, S)`` per layer (empty unless ``need_weights``).
    """

    def __init__(self, n_layers: int, **kwargs) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(**kwargs) for _ in range(n_layers))
        self.final_norm = _final_norm(kwargs)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None = None,
        self_mask: Tensor | None = None,
        need_weights: bool = False,
        cache: DecoderCache | None = None,
    ):
        self_maps, cross_maps = [], []
        for i, layer in enumerate(self.layers):
            layer_cache = cache.layers[i] if cache is not None else None
            x, sw, cw = layer(x, memory, memory_mask, self_mask, need_weights, layer_cache)
            if need_weights:
                self_maps.append(sw)
                cross_maps.append(cw)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, self_maps, cross_maps


class Transformer(nn.Module):
    """The Transformer of "Attention Is All You Need" (Vaswani et al., 2017).

    Args:
        config: a :class:`~qkv.TransformerConfig`.

    Shape:
        - src ``(B, S)`` and tgt ``(B, T)`` int64 token ids, padded with ``config.pad_id`` on the right.
        - ``forward`` -> logits ``(B, T, V_tgt)``; with ``return_attention=True`` also an
          :class:`AttentionMaps`.

    The softmax of §3.4 is not applied inside: the loss (cross-entropy) and decoding (log-softmax) apply it to
    the logits, which is numerically safer. ``model.log_probs(logits)`` gives log p(y_t | y_<t, x).

    Example:
        >>> cfg = TransformerConfig.preset("tiny", src_vocab_size=100, tgt_vocab_size=100)
        >>> model = Transformer(cfg)
        >>> src, tgt = torch.randint(1, 100, (2, 7)), torch.randint(1, 100, (2, 5))
        >>> model(src, tgt).shape
        torch.Size([2, 5, 100])
    """

    # decode() accepts memory with B rows for B·g target rows (rows g·i … g·i + g - 1 read source i): beam
    # search passes each sentence's encoder output once for its K beams (grouped cross-attention).
    grouped_memory = True

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.src_embed = TokenEmbedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id, scale=c.scale_embeddings)
        if c.tie_embeddings == "all":
            self.tgt_embed = self.src_embed  # one matrix for both languages and the output (§3.4)
        else:
            self.tgt_embed = TokenEmbedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_id, scale=c.scale_embeddings)
        self.src_pos = PositionalEncoding(c.d_model, c.max_len, c.positional, c.positional_layout)
        self.tgt_pos = self.src_pos if c.positional == "sinusoidal" else PositionalEncoding(
            c.d_model, c.max_len, c.positional
        )
        self.embed_dropout = Dropout(c.dropout)  # dropout on embeddings + positions (§5.4)
        kwargs = {**layer_kwargs(c), "attention": c.attention}
        self.encoder = Encoder(c.n_layers, **kwargs)
        self.decoder = Decoder(c.decoder_layers, **kwargs)
        # the pre-softmax linear map (with a bias only as Marian's final_logits_bias, a flagged option)
        self.generator = nn.Linear(c.d_model, c.tgt_vocab_size, bias=c.output_bias)
        if c.output_bias:
            nn.init.zeros_(self.generator.bias)
        if c.tie_embeddings in ("decoder", "all"):
            self.generator.weight = self.tgt_embed.weight
        else:
            nn.init.normal_(self.generator.weight, std=c.d_model**-0.5)
        if c.init == "normal":
            normal_init_(self, c.init_std)  # flagged deviation (BERT / Marian): N(0, init_std²) everywhere

    # -- masks -------------------------------------------------------------------------------------------
    def src_mask(self, src: Tensor) -> Tensor:
        """Key-padding mask of the source, ``(B, 1, 1, S)``: used by encoder self- and cross-attention."""
        check_token_ids("src", src)
        return padding_mask(src, self.config.pad_id)

    def window_mask(self, t_q: int, t_k: int, device: torch.device) -> Tensor | None:
        """The local-attention band ``(1, 1, T_q, T_k)`` of ``attention_window``, or ``None`` (global)."""
        window = self.config.attention_window
        return None if window is None else local_mask(t_q, t_k, window, device=device)

    # -- the three entry points ---------------------------------------------------------------------------
    def encode(self, src: Tensor, src_mask: Tensor | None = None, return_attention: bool = False):
        """Encode ``src`` ``(B, S)`` -> memory ``(B, S, D)`` (and a list of L maps ``(B, H, S, S)``)."""
        if src_mask is None:
            src_mask = self.src_mask(src)  # checks src
        else:
            check_token_ids("src", src)
        x = self.embed_dropout(self.src_pos(self.src_embed(src)))  # (B, S, D)
        s = src.shape[1]
        self_mask = combine_masks(src_mask, self.window_mask(s, s, src.device))  # (B, 1, 1 or S, S)
        memory, maps = self.encoder(x, self_mask, need_weights=return_attention)
        return (memory, maps) if return_attention else memory

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
        return_attention: bool = False,
        tgt_mask: Tensor | None = None,
    ):
        """Decode ``tgt`` ``(B, T)`` against ``memory`` ``(B, S, D)`` -> logits ``(B, T, V)``.

        The causal mask is always applied (and the band of ``attention_window``, if set). With a ``cache``
        (see :meth:`new_cache`), ``tgt`` holds only the
        new tokens; their positions continue from ``cache.offset`` and keys/values of earlier steps are
        reused. ``tgt_mask`` optionally adds a key mask (e.g. target padding); right-padded targets need none,
        since the causal mask already hides the padding after each real position.

        ``memory`` (and ``memory_mask``) may hold one row per group of ``g`` target rows, ``tgt`` then having
        ``B·g`` rows: rows ``g·i … g·i + g - 1`` read source ``i`` (grouped cross-attention; beam search).
        """
        check_token_ids("tgt", tgt)
        offset = cache.offset if cache is not None else 0
        x = self.embed_dropout(self.tgt_pos(self.tgt_embed(tgt), offset=offset))  # (B, T, D)
        t = tgt.shape[1]
        tgt_mask = combine_masks(tgt_mask, self.window_mask(t, offset + t, tgt.device))  # band over cached keys
        h, self_maps, cross_maps = self.decoder(x, memory, memory_mask, tgt_mask, return_attention, cache)
        if cache is not None:
            cache.offset += tgt.shape[1]
        logits = self.generator(h)  # (B, T, V)
        return (logits, self_maps, cross_maps) if return_attention else logits

    def forward(self, src: Tensor, tgt: Tensor, return_attention: bool = False):
        """Teacher-forced forward pass: logits ``(B, T, V)`` for next-token prediction at every position.

        With ``return_attention=True`` returns ``(logits, AttentionMaps)`` holding every encoder self-,
        decoder masked self- and cross-attention map (see :class:`AttentionMaps` for shapes).
        """
        src_mask = self.src_mask(src)  # (B, 1, 1, S)
        if not return_attention:
            memory = self.encode(src, src_mask)
            return self.decode(tgt, memory, src_mask)
        memory, enc_maps = self.encode(src, src_mask, return_attention=True)
        logits, self_maps, cross_maps = self.decode(tgt, memory, src_mask, return_attention=True)
        return logits, AttentionMaps(enc_maps, self_maps, cross_maps)

    def new_cache(self) -> DecoderCache:
        """An empty incremental-decoding cache for :meth:`decode`."""
        return DecoderCache([LayerCache() for _ in self.decoder.layers])

    @staticmethod
    def log_probs(logits: Tensor) -> Tensor:
        """log softmax over the vocabulary: the final softmax of Figure 1, in log space."""
        return torch.log_softmax(logits.float(), dim=-1)

    def num_parameters(self) -> int:
        """Number of distinct trainable parameters (tied matrices counted once)."""
        return sum(p.numel() for p in self.parameters())
