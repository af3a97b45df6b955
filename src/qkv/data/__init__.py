"""Data: reading parallel text, Multi30k's layout, subword tokenizers (§5.1) and the built-in dates task."""

from qkv.data.multi30k import find_splits, read_splits
from qkv.data.synthetic import date_examples, date_pairs, write_demo_corpus
from qkv.data.text import DataError, ParallelText, read_lines, read_parallel
from qkv.data.tokenizer import SPECIAL_TOKENS, SubwordTokenizer, TokenizerPair

__all__ = [
    "SPECIAL_TOKENS",
    "DataError",
    "ParallelText",
    "SubwordTokenizer",
    "TokenizerPair",
    "date_examples",
    "date_pairs",
    "find_splits",
    "read_lines",
    "read_parallel",
    "read_splits",
    "write_demo_corpus",
]
