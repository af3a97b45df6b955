"""Tokenizers of Hugging Face folders behind the interface of qkv's :class:`~qkv.data.tokenizer.SubwordTokenizer`.

Everything above the models (the :class:`~qkv.tasks.translation.Translator`, decoding, the attention views, ``qkv
explain``) speaks qkv's ids: ``<pad>`` = 0, ``<s>`` = 1, ``</s>`` = 2, ``<unk>`` = 3. A pretrained model has its
own. :class:`VocabMap` renumbers a Marian vocabulary into qkv's convention once, at import (the model's
embedding and output rows are permuted the same way, so the model is unchanged), and the adapters here turn text
into those ids and back, with the same methods as ``SubwordTokenizer``: ``encode``, ``encode_batch``,
``tokens``, ``decode``, ``id_to_token``, ``token_to_id``, ``vocab_size``.

- :class:`MarianSentencePiece`: OPUS-MT's ``source.spm`` / ``target.spm`` (SentencePiece, via the
  ``sentencepiece`` package) and ``vocab.json``, exactly as transformers' ``MarianTokenizer`` uses them.
- :class:`WordPieceTokenizer`: BERT's ``tokenizer.json`` (or ``vocab.txt``), via ``tokenizers``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from qkv.data.tokenizer import BOS, EOS, PAD, SPECIAL_TOKENS, UNK
from qkv.interop.common import fail, require

_META = "▁"  # SentencePiece's visible space


@dataclass(frozen=True)
class VocabMap:
    """A Hugging Face vocabulary renumbered into qkv's special ids (a permutation plus one extra row).

    qkv id 0 is the model's pad, 1 (``<s>``, what qkv's decoder starts from) a copy of the model's decoder start
    token (Marian starts from pad), 2 its eos, 3 its unk; the model's other ids follow in their order.

    Attributes:
        to_hf: ``(V + 1,)`` the model's id of each qkv id (index embeddings and output rows with it).
        to_qkv: ``(V,)`` the qkv id of each of the model's ids (the start token, when it is pad, maps to 0).
    """

    to_hf: Tensor
    to_qkv: Tensor

    @classmethod
    def build(cls, size: int, *, pad: int, start: int, eos: int, unk: int, folder: Path) -> VocabMap:
        ids = {"pad_token_id": pad, "decoder_start_token_id": start, "eos_token_id": eos, "<unk>": unk}
        for field, i in ids.items():
            if not (isinstance(i, int) and 0 <= i < size):
                fail(folder, field, f"must be an id inside the vocabulary [0, {size}), got {i!r}")
        if len({pad, eos, unk}) < 3:
            fail(folder, "pad_token_id", f"pad ({pad}), eos ({eos}) and unk ({unk}) must be different ids")
        specials = {pad, eos, unk}
        to_hf = [pad, start, eos, unk, *(i for i in range(size) if i not in specials)]
        to_qkv = torch.empty(size, dtype=torch.long)
        for q in reversed(range(len(to_hf))):  # reversed: the start token keeps its own row, not the <s> copy
            if q != BOS:
                to_qkv[to_hf[q]] = q
        return cls(torch.tensor(to_hf), to_qkv)

    @property
    def size(self) -> int:
        """qkv's vocabulary size (the model's + 1: the ``<s>`` copy)."""
        return self.to_hf.shape[0]


class MarianSentencePiece:
    """One side of an OPUS-MT (Marian) tokenizer: SentencePiece pieces, looked up in ``vocab.json``, in qkv ids.

    As transformers' ``MarianTokenizer``: a leading language code ``>>xx<<`` is one token; pieces missing from
    ``vocab.json`` become ``<unk>``; decoding glues the pieces with the *source* SentencePiece model, as
    transformers does for a shared vocabulary (``decoder`` below), keeping ``<unk>`` visible.

    Args:
        encoder: the SentencePiece model that splits text of this side (``source.spm`` or ``target.spm``).
        decoder: the SentencePiece model that joins pieces back into text.
        vocab: ``vocab.json``: piece -> the model's id.
        vocab_map: the renumbering into qkv's ids.
    """

    PAD, BOS, EOS, UNK = PAD, BOS, EOS, UNK

    def __init__(self, encoder, decoder, vocab: dict[str, int], vocab_map: VocabMap) -> None:
        self._spm, self._spm_decode = encoder, decoder
        self._vocab = vocab
        self._map = vocab_map
        by_hf = {i: piece for piece, i in vocab.items()}
        self._pieces = [by_hf.get(int(h), "<unk>") for h in vocab_map.to_hf.tolist()]
        self._pieces[PAD], self._pieces[BOS], self._pieces[EOS], self._pieces[UNK] = SPECIAL_TOKENS
        self._ids = {piece: int(vocab_map.to_qkv[i]) for piece, i in vocab.items()}
        self._unk_hf = int(vocab_map.to_hf[UNK])

    @classmethod
    def load(cls, folder: Path, model_file: str, decode_file: str, vocab: dict[str, int], vocab_map: VocabMap):
        spm = require("sentencepiece", "reading a Marian (OPUS-MT) tokenizer")
        models = []
        for name in (model_file, decode_file):
            path = folder / name
            if not path.is_file():
                fail(folder, name, "tokenizer file not found (Marian needs source.spm, target.spm, vocab.json)")
            processor = spm.SentencePieceProcessor()
            try:
                processor.Load(str(path))
            except (OSError, RuntimeError) as err:
                fail(folder, name, f"not a SentencePiece model ({err})")
            models.append(processor)
        return cls(models[0], models[1], vocab, vocab_map)

    @property
    def vocab_size(self) -> int:
        return self._map.size

    def __len__(self) -> int:
        return self.vocab_size

    def _pieces_of(self, text: str) -> list[str]:
        code = []
        if text.startswith(">>") and (end := text.find("<<")) != -1:
            code, text = [text[: end + 2]], text[end + 2 :]
        return code + self._spm.encode(text, out_type=str)

    def tokens(self, text: str) -> list[str]:
        """The pieces of ``text``, one per id of :meth:`encode` (``<unk>`` for a piece not in ``vocab.json``; a
        language code ``>>xx<<`` first, as one token)."""
        return [p if p in self._ids else "<unk>" for p in self._pieces_of(text)]

    def encode(self, text: str) -> list[int]:
        """qkv ids of ``text``, without ``</s>`` (batching appends it, as MarianTokenizer does)."""
        return [self._ids.get(piece, UNK) for piece in self._pieces_of(text)]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of qkv ids: ``<pad>``, ``<s>``, ``</s>`` dropped, ``<unk>`` kept visible."""
        pieces = [self.id_to_token(i) for i in ids if int(i) not in (PAD, BOS, EOS)]
        out, run = "", []
        for piece in pieces:
            if piece == "<unk>":  # as MarianTokenizer: special tokens are not decoded by SentencePiece
                out += self._spm_decode.decode_pieces(run) + piece + " "
                run = []
            else:
                run.append(piece)
        out += self._spm_decode.decode_pieces(run)
        return out.replace(_META, " ").strip()

    def id_to_token(self, i: int) -> str:
        i = int(i)
        if not 0 <= i < self.vocab_size:
            raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
        return self._pieces[i]

    def token_to_id(self, token: str) -> int | None:
        if token in SPECIAL_TOKENS:
            return SPECIAL_TOKENS.index(token)
        return self._ids.get(token)

    def __repr__(self) -> str:
        return f"MarianSentencePiece(vocab_size={self.vocab_size})"


class WordPieceTokenizer:
    """BERT's tokenizer (``tokenizer.json`` or ``vocab.txt``, via ``tokenizers``) for qkv's text classifier.

    ``encode`` gives the word-piece ids followed by ``[SEP]``: the classifier prepends [CLS] itself (its learned
    [CLS] vector is BERT's ``[CLS]`` embedding), so the model sees ``[CLS] … [SEP]`` as BERT does. The ids are
    BERT's own (its ``[PAD]`` is 0, as qkv's).

    Args:
        tokenizer: a ``tokenizers.Tokenizer``.
        sep_token: the separator appended to each sentence.
    """

    def __init__(self, tokenizer, sep_token: str = "[SEP]", *, folder: Path) -> None:
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tok = tokenizer
        self.sep_token = sep_token
        sep = tokenizer.token_to_id(sep_token)
        if sep is None:
            fail(folder, "tokenizer", f"the vocabulary has no {sep_token!r} token")
        self.sep_id = sep
        self.PAD = tokenizer.token_to_id("[PAD]") if tokenizer.token_to_id("[PAD]") is not None else PAD
        self.UNK = tokenizer.token_to_id("[UNK]") if tokenizer.token_to_id("[UNK]") is not None else UNK

    @classmethod
    def load(cls, folder: Path, lowercase: bool = True) -> WordPieceTokenizer:
        """``tokenizer.json`` if present, else BERT's ``vocab.txt`` (``lowercase`` from tokenizer_config.json)."""
        from tokenizers import Tokenizer
        from tokenizers.implementations import BertWordPieceTokenizer

        if (folder / "tokenizer.json").is_file():
            try:
                return cls(Tokenizer.from_file(str(folder / "tokenizer.json")), folder=folder)
            except Exception as err:  # the Rust parser raises plain Exceptions
                fail(folder, "tokenizer.json", f"not a valid Hugging Face tokenizer ({err})")
        if (folder / "vocab.txt").is_file():
            tok = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=lowercase)
            return cls(tok._tokenizer, folder=folder)
        fail(folder, "tokenizer.json", "no tokenizer: looked for tokenizer.json and vocab.txt")

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        """Word-piece ids of ``text`` and ``[SEP]`` (no ``[CLS]``: the model prepends it)."""
        return [*self._tok.encode(text, add_special_tokens=False).ids, self.sep_id]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        encoded = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [[*e.ids, self.sep_id] for e in encoded]

    def tokens(self, text: str) -> list[str]:
        """Display strings, one per id of :meth:`encode` (the last is ``[SEP]``)."""
        return [*self._tok.encode(text, add_special_tokens=False).tokens, self.sep_token]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``, special tokens dropped (as ``tokenizer.decode(ids, skip_special_tokens=True)``)."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def id_to_token(self, i: int) -> str:
        token = self._tok.id_to_token(int(i))
        if token is None:
            raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
        return token

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(vocab_size={self.vocab_size})"
