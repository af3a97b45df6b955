"""Hyper-parameters and presets of the recurrent baselines (:mod:`qkv.models.rnn`).

Legend: B batch, S source length, T target length, E d_embed, H d_hidden, L layers, V vocabulary size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from qkv.config import ConfigMixin, check, check_fractions, check_positive_ints, config_preset, is_int

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
