"""An encoder-only text classifier, BERT-style: the Transformer's encoder (§3.1) plus a classification head.

Legend: B batch, T tokens in a sentence, N = T (+1 with [CLS]), D d_model, H heads, C classes, V vocabulary.

    h = Encoder(PE(Embed([CLS] x_1 … x_T)))            the encoder of §3.1, unchanged
    logits = W · Dropout(h_[CLS])                        (B, C)      (pooling="cls", Devlin et al. 2019 §3)
    logits = W · Dropout(mean_{t: x_t ≠ PAD} h_t)        (B, C)      (pooling="mean", the alternative)

Why a [CLS] token. A classifier needs one vector per sentence, but the encoder gives one vector per token.
BERT prepends a learned vector, [CLS], that is not a word: it has no meaning of its own to preserve, and in
every layer it attends to all tokens of the sentence. Because only its final state feeds the classifier head,
training shapes it into a summary of the sentence for the task — the model learns *where to look* (its
attention) instead of being told to weigh every token equally. Mean pooling over the non-padding tokens is the
simple alternative (no extra position; every token contributes equally); it is often as good for small models,
so both are options.

The [CLS] vector here is an ``nn.Parameter`` prepended to the embedded sentence (so it needs no vocabulary
id), and the encoder is :class:`qkv.models.transformer.Encoder`, the same stack the translation model uses;
embedding -> [CLS] -> positions -> encoder is shared with the ViT (:mod:`qkv.models.encoder_only`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import torch
from torch import Tensor, nn

from qkv.config import ConfigError, ConfigMixin, config_preset, is_int
from qkv.models.encoder_only import EncoderClassifier, build_encoder, check_encoder_config
from qkv.nn.dropout import Dropout
from qkv.nn.embedding import TokenEmbedding
from qkv.nn.masks import padding_mask
from qkv.nn.positional import PositionalEncoding

POOLINGS = ("cls", "mean")

PRESETS: dict[str, dict[str, Any]] = {
    # tests and demos: trains in seconds
    "tiny": dict(d_model=32, n_heads=2, d_ff=64, n_layers=1, dropout=0.0, max_len=64),
    # SST-2 from scratch on a CPU in minutes (see bench/sst2.py)
    "sst2": dict(
        d_model=128,
        n_heads=4,
        d_ff=256,
        n_layers=2,
        dropout=0.3,
        attention_dropout=0.1,
        activation="gelu",
        positional="learned",
        max_len=96,
    ),
    # BERT-base's shape (Devlin et al. 2019), for reference; far too big for a CPU
    "bert-base": dict(
        d_model=768,
        n_heads=12,
        d_ff=3072,
        n_layers=12,
        dropout=0.1,
        activation="gelu",
        norm="post",
        positional="learned",
        max_len=512,
    ),
}


@dataclass(frozen=True)
class ClassifierConfig(ConfigMixin):
    """Hyper-parameters of :class:`TextClassifier` (frozen, validated on construction).

    Args:
        vocab_size: number of token ids V (including PAD and, for MLM pre-training, the [MASK] id).
        n_classes: number of classes C (2 for SST-2).
        d_model, n_heads, d_ff, n_layers: encoder sizes, as in :class:`qkv.TransformerConfig`.
        dropout: residual/embedding dropout (§5.4) and dropout before the head.
        attention_dropout, activation_dropout: extra dropouts (not in the paper; 0 by default).
        activation: ``"relu"`` (paper) or ``"gelu"`` (BERT; flagged option).
        norm: ``"post"`` (paper and BERT) or ``"pre"`` (flagged option).
        positional: ``"sinusoidal"`` (paper) or ``"learned"`` (BERT; flagged option).
        pooling: ``"cls"`` (a learned [CLS] vector is prepended; its final state feeds the head) or ``"mean"``
            (mean of the final states of the non-padding tokens; no [CLS]).
        max_len: most tokens per sentence (not counting [CLS]); longer inputs are an error.
        pad_id: padding id (masked out of attention and of mean pooling).
        mask_id: the [MASK] id used by MLM pre-training (:mod:`qkv.tasks.text_classification.mlm`), or ``None``.
        eps: LayerNorm epsilon (BERT: 1e-12).

    BERT's embedding and head (Devlin et al. 2019), each a deviation from the paper, flagged, off by default
    (``qkv.interop.hf_bert`` turns them on to import a pretrained BERT):

    Args:
        scale_embeddings: multiply token embeddings by √d_model (§3.4; True). BERT does not (``False``).
        n_segments: BERT's token-type ("segment") embeddings: a table of ``n_segments`` rows whose row 0 (one
            sentence) is added at every position. 0 (paper): none.
        embed_norm: a LayerNorm on embeddings + positions (+ segment) before the encoder (BERT). False (paper).
        pooler: BERT's pooler, ``tanh(W h_[CLS] + b)``, between the pooled state and the head. False.
    """

    vocab_size: int
    n_classes: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 512
    n_layers: int = 2
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    activation: str = "gelu"
    norm: str = "post"
    positional: str = "sinusoidal"
    pooling: str = "cls"
    max_len: int = 128
    pad_id: int = 0
    mask_id: int | None = None
    eps: float = 1e-5
    scale_embeddings: bool = True
    n_segments: int = 0
    embed_norm: bool = False
    pooler: bool = False

    def __post_init__(self) -> None:
        check_encoder_config(
            self,
            positive=("vocab_size", "d_model", "n_heads", "d_ff", "n_layers", "max_len"),
            choices={"positional": ("sinusoidal", "learned"), "pooling": POOLINGS},
        )
        if not (isinstance(self.n_classes, int) and self.n_classes >= 2):
            raise ConfigError(f"n_classes must be an int >= 2, got {self.n_classes!r}")
        for name in ("scale_embeddings", "embed_norm", "pooler"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not (is_int(self.n_segments) and self.n_segments >= 0):
            raise ConfigError(f"n_segments must be an int >= 0, got {self.n_segments!r}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ConfigError(f"pad_id {self.pad_id} is outside the vocabulary of {self.vocab_size}")
        if self.mask_id is not None and not (0 <= self.mask_id < self.vocab_size and self.mask_id != self.pad_id):
            raise ConfigError(f"mask_id {self.mask_id} must be a non-pad id below vocab_size {self.vocab_size}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Self:
        """A named preset (``tiny``, ``sst2``, ``bert-base``) with overrides (``vocab_size`` is required)."""
        return config_preset(cls, PRESETS, name, overrides, "classifier")


class TextClassifier(EncoderClassifier):
    """Encoder-only sentence classifier with [CLS] or mean pooling (see the module docstring).

    Args:
        config: a :class:`ClassifierConfig`.

    Shape:
        - tokens ``(B, T)`` int64, right-padded with ``config.pad_id`` (no BOS/EOS needed).
        - ``forward`` -> logits ``(B, C)``; with ``return_attention=True`` also a list of L encoder maps
          ``(B, H, N, N)`` where N = T + 1 with [CLS] (position 0 is [CLS]) or N = T with mean pooling.
        - ``encode`` -> final states ``(B, N, D)``, the key mask ``(B, 1, 1, N)`` and the maps
          (:class:`~qkv.models.encoder_only.EncoderClassifier`).

    Example:
        >>> model = TextClassifier(ClassifierConfig.preset("tiny", vocab_size=100))
        >>> model(torch.randint(1, 100, (3, 7))).shape
        torch.Size([3, 2])
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed = TokenEmbedding(c.vocab_size, c.d_model, padding_idx=c.pad_id, scale=c.scale_embeddings)
        self.cls = nn.Parameter(torch.randn(1, 1, c.d_model) * 0.02) if c.pooling == "cls" else None
        n_positions = c.max_len + (1 if c.pooling == "cls" else 0)
        self.pos = PositionalEncoding(c.d_model, n_positions, c.positional)
        # BERT's options (flagged deviations, see ClassifierConfig): segment embeddings, embedding LayerNorm, pooler
        self.segment = nn.Embedding(c.n_segments, c.d_model) if c.n_segments else None
        self.embed_norm = nn.LayerNorm(c.d_model, eps=c.eps) if c.embed_norm else None
        self.pooler = nn.Linear(c.d_model, c.d_model) if c.pooler else None
        self.embed_dropout = Dropout(c.dropout)
        self.encoder = build_encoder(c)
        self.head_dropout = Dropout(c.dropout)
        self.head = nn.Linear(c.d_model, c.n_classes)  # the classifier on the pooled state

    def embed_inputs(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Token embeddings ``(B, T, D)`` and the padding mask ``(B, 1, 1, T)``."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (B, T) ids, got shape {tuple(tokens.shape)}")
        if tokens.shape[1] > self.config.max_len:
            raise ValueError(
                f"sentence of {tokens.shape[1]} tokens is longer than max_len={self.config.max_len}; "
                "truncate it or build the model with a larger max_len"
            )
        return self.embed(tokens), padding_mask(tokens, self.config.pad_id)  # (B, T, D), (B, 1, 1, T)

    def add_positions(self, x: Tensor) -> Tensor:
        x = self.pos(x)  # (B, N, D): [CLS] takes position 0
        if self.segment is not None:
            x = x + self.segment.weight[0]  # BERT: every token of a single sentence is in segment 0
        return self.embed_norm(x) if self.embed_norm is not None else x

    def pool(self, h: Tensor, mask: Tensor) -> Tensor:
        """One vector per sentence ``(B, D)``: the [CLS] state or the mean over non-padding positions."""
        if self.config.pooling == "cls":
            return h[:, 0]  # (B, D)
        keep = mask[:, 0, 0, :, None].to(h.dtype)  # (B, T, 1)
        return (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)  # (B, D)

    def classify(self, h: Tensor, mask: Tensor) -> Tensor:
        pooled = self.pool(h, mask)  # (B, D)
        if self.pooler is not None:
            pooled = torch.tanh(self.pooler(pooled))  # BERT's pooler (flagged option)
        return self.head(self.head_dropout(pooled))  # (B, C)
