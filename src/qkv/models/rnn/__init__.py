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

The files: ``config.py`` (RNNConfig, presets), ``base.py`` (what both share), ``lstm.py`` (Sutskever et al.),
``rnnsearch.py`` (Bahdanau et al.).
"""

from __future__ import annotations

from typing import Any

from qkv.models.rnn.base import RNNCache, RNNEncoderDecoder, reverse_padded, run_packed, source_lengths
from qkv.models.rnn.config import ARCHS, INITS, PRESETS, RNNConfig
from qkv.models.rnn.lstm import LSTMEncoderDecoder
from qkv.models.rnn.rnnsearch import AdditiveAttention, AttentionGRUEncoderDecoder


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
    "PRESETS",
    "AdditiveAttention",
    "AttentionGRUEncoderDecoder",
    "LSTMEncoderDecoder",
    "RNNCache",
    "RNNConfig",
    "RNNEncoderDecoder",
    "build_rnn",
    "reverse_padded",
    "run_packed",
    "source_lengths",
]
