"""Decoding, one strategy per file (as OpenNMT splits them): greedy search, beam search with the GNMT length
penalty (§6.1), and corpus decoding; ``common`` holds what every search shares.

Both searches take any encoder-decoder with the core interface (``encode``, ``src_mask``, ``new_cache``,
``decode``) and a batch of source ids ``(B, S)``, and return token ids per sentence without BOS/EOS/PAD:

    >>> greedy_search(model, src)                          # doctest: +SKIP
    >>> beam_search(model, src, beam_size=4, alpha=0.6)    # doctest: +SKIP
"""

from qkv.data.special import BOS, EOS, PAD
from qkv.decode.beam import Hypothesis, beam_search, beam_search_nbest, length_penalty
from qkv.decode.common import max_output_lengths, strip_specials
from qkv.decode.corpus import decode_corpus, decode_corpus_nbest
from qkv.decode.greedy import greedy_search

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "Hypothesis",
    "beam_search",
    "beam_search_nbest",
    "decode_corpus",
    "decode_corpus_nbest",
    "greedy_search",
    "length_penalty",
    "max_output_lengths",
    "strip_specials",
]
