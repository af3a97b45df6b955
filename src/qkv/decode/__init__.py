"""Decoding: greedy search and beam search with the GNMT length penalty (§6.1).

Both take any encoder-decoder with the core interface (``encode``, ``src_mask``, ``new_cache``, ``decode``)
and a batch of source ids ``(B, S)``, and return token ids per sentence without BOS/EOS/PAD:

    >>> greedy_search(model, src)                          # doctest: +SKIP
    >>> beam_search(model, src, beam_size=4, alpha=0.6)    # doctest: +SKIP
"""

from qkv.decode.beam import beam_search, length_penalty
from qkv.decode.search import BOS, EOS, PAD, decode_corpus, greedy_search, max_output_lengths

__all__ = ["BOS", "EOS", "PAD", "beam_search", "decode_corpus", "greedy_search", "length_penalty", "max_output_lengths"]
