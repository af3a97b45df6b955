"""Subword tokenizers (§5.1) on Hugging Face ``tokenizers``: BPE, unigram, or whole words for toy tasks.

The paper encodes WMT En-De with byte-pair encoding (BPE, Sennrich et al., 2016) into a *shared* source-target
vocabulary of about 37,000 tokens, and En-Fr with 32,000 word-pieces (§5.1). :class:`SubwordTokenizer` trains
either kind (``"bpe"``, or the ``"unigram"`` language model of SentencePiece, close to word-pieces) on the
training side of a corpus, and :class:`TokenizerPair` holds one joint vocabulary (the paper's choice) or one
per language.

The pipeline, identical for every model kind:

    text --NFKC--> normalised text --Metaspace--> "▁Ein" "▁kleines" … --model--> ids
    ids --model--> "▁Ein" "▁klein" "es" … --Metaspace decoder--> "Ein kleines …"

Metaspace (SentencePiece's convention) turns each space into ``▁`` glued to the next word, so the tokens alone
say where the spaces were and ``decode(encode(s)) == s`` for a normal sentence whose characters are all in the
vocabulary (NFKC may still change a few characters, e.g. a no-break space into a space). The ``"word"`` model
(not in the paper, for toy tasks such as the built-in dates demo) also splits off each punctuation mark and
each digit, so its vocabulary stays closed (no ``<unk>`` for an unseen number) and still round-trips.

Special tokens have fixed ids everywhere in qkv: ``<pad>`` = 0, ``<s>`` = 1, ``</s>`` = 2, ``<unk>`` = 3.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from qkv.data.special import BOS, EOS, PAD, UNK  # the special ids of the whole library
from qkv.data.text import DataError

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")  # ids 0, 1, 2, 3
MODELS = ("bpe", "unigram", "word")
_MODEL_NAMES = {"BPE": "bpe", "Unigram": "unigram", "WordLevel": "word"}  # HF model class -> our name
_META = "▁"  # U+2581, SentencePiece's visible space


def _pre_tokenizer(model: str):
    metaspace = pre_tokenizers.Metaspace(replacement=_META, prepend_scheme="always")
    if model != "word":
        return metaspace
    return pre_tokenizers.Sequence(
        [metaspace, pre_tokenizers.Punctuation("isolated"), pre_tokenizers.Digits(individual_digits=True)]
    )


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SubwordTokenizer:
    """Text <-> token ids, wrapping a Hugging Face :class:`tokenizers.Tokenizer` (§5.1).

    Build one with :meth:`train` or :meth:`load`; the constructor wraps an existing HF tokenizer and checks
    that its special tokens have the ids qkv relies on.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` whose ids 0-3 are ``<pad>``, ``<s>``, ``</s>``, ``<unk>``.
        source: where it came from, used in error messages.

    Example:
        >>> tok = SubwordTokenizer.train(["Ein kleines Mädchen.", "Ein Hund."], vocab_size=60)
        >>> tok.tokens("Ein kleines Mädchen.")[:1], tok.decode(tok.encode("Ein Hund."))
        (['▁Ein'], 'Ein Hund.')
    """

    PAD, BOS, EOS, UNK = PAD, BOS, EOS, UNK

    def __init__(self, tokenizer: Tokenizer, *, source: str = "tokenizer") -> None:
        for expected_id, token in enumerate(SPECIAL_TOKENS):
            got = tokenizer.id_to_token(expected_id)
            if got != token:
                raise DataError(f"{source}: token id {expected_id} must be {token!r}, got {got!r}")
        model = type(tokenizer.model).__name__
        if model not in _MODEL_NAMES:
            raise DataError(
                f"{source}: unsupported tokenizer model {model}; expected one of {list(_MODEL_NAMES)}"
            )
        self._tok = tokenizer

    # -- building -----------------------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        model: str = "bpe",
    ) -> SubwordTokenizer:
        """Learn a vocabulary from ``texts`` (the training side only: never look at val/test).

        Args:
            texts: sentences, one string each.
            vocab_size: the vocabulary size to aim for, special tokens included. BPE keeps every character
                seen, so a tiny ``vocab_size`` can be exceeded; ``"word"`` stops at the words seen.
            model: ``"bpe"`` (paper, WMT En-De), ``"unigram"`` (SentencePiece's unigram LM, close to the
                word-pieces of En-Fr) or ``"word"`` (whole words; a deviation for toy tasks).

        Returns:
            The trained tokenizer. Training on Multi30k's 29,000 sentences takes about a second.
        """
        if model not in MODELS:
            raise ValueError(f"unknown tokenizer model {model!r}; expected one of {list(MODELS)}")
        if vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError(
                f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}"
            )
        texts = list(texts)
        if not texts:
            raise ValueError("cannot train a tokenizer on no text")
        specials = list(SPECIAL_TOKENS)
        common = dict(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
        if model == "bpe":
            hf = Tokenizer(models.BPE(unk_token="<unk>"))
            trainer = trainers.BpeTrainer(**common)
        elif model == "unigram":
            hf = Tokenizer(models.Unigram())
            trainer = trainers.UnigramTrainer(unk_token="<unk>", **common)
        else:
            hf = Tokenizer(models.WordLevel(unk_token="<unk>"))
            trainer = trainers.WordLevelTrainer(**common)
        hf.normalizer = normalizers.NFKC()
        hf.pre_tokenizer = _pre_tokenizer(model)
        hf.decoder = decoders.Metaspace(replacement=_META, prepend_scheme="always")
        try:
            hf.train_from_iterator(texts, trainer, length=len(texts))
        except Exception as err:  # the Rust trainers raise plain Exceptions
            raise ValueError(
                f"training a {model} tokenizer with vocab_size={vocab_size} failed: {err}"
            ) from err
        return cls(hf, source=f"trained {model} tokenizer")

    @classmethod
    def load(cls, path: str | Path) -> SubwordTokenizer:
        """Load a tokenizer saved by :meth:`save` (a Hugging Face ``tokenizer.json``).

        Raises:
            FileNotFoundError: no such file.
            DataError: the file is not a valid tokenizer JSON, or its special tokens have the wrong ids.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such tokenizer file")
        try:
            text = path.read_text(encoding="utf-8")
            json.loads(text)  # a clearer message than the Rust parser's for a truncated file
            hf = Tokenizer.from_str(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"{path}: not a tokenizer JSON file: {err}") from err
        except Exception as err:  # the Rust parser raises plain Exceptions
            raise DataError(f"{path}: not a valid Hugging Face tokenizer: {err}") from err
        return cls(hf, source=str(path))

    def save(self, path: str | Path) -> Path:
        """Write the tokenizer as one Hugging Face JSON file (atomically). Returns the path."""
        path = Path(path)
        _atomic_write_text(path, self._tok.to_str(pretty=True))
        return path

    # -- using --------------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included: embeddings need this many rows."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def model(self) -> str:
        """``"bpe"``, ``"unigram"`` or ``"word"``."""
        return _MODEL_NAMES[type(self._tok.model).__name__]

    @property
    def hf_tokenizer(self) -> Tokenizer:
        """The wrapped Hugging Face tokenizer."""
        return self._tok

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without ``<s>`` / ``</s>`` (batching adds those)."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode` for many texts at once (parallel in Rust)."""
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def tokens(self, text: str) -> list[str]:
        """Display strings of the tokens of ``text``, one per id of :meth:`encode`.

        Example: ``tok.tokens("Ein kleines")`` -> ``['▁Ein', '▁klein', 'es']``.
        """
        return self._tok.encode(text, add_special_tokens=False).tokens

    def decode(self, ids: Iterable[int]) -> str:
        """Detokenized text of ``ids``: ``<pad>``, ``<s>``, ``</s>`` are dropped, ``<unk>`` is kept visible.

        Accepts any iterable of integers (a list, or a 1-D tensor). Raises ``ValueError`` for an id outside
        ``[0, vocab_size)``.
        """
        ids = [int(i) for i in ids]
        n = self.vocab_size
        bad = [i for i in ids if not 0 <= i < n]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary [0, {n})")
        return self._tok.decode([i for i in ids if i > self.EOS], skip_special_tokens=False)

    def id_to_token(self, i: int) -> str:
        """The token string of id ``i`` (``ValueError`` when out of range)."""
        token = self._tok.id_to_token(int(i))
        if token is None:
            raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
        return token

    def token_to_id(self, token: str) -> int | None:
        """The id of ``token``, or ``None`` when it is not in the vocabulary."""
        return self._tok.token_to_id(token)

    def __len__(self) -> int:
        return self.vocab_size

    def _content(self) -> dict:
        # unigram scores may change in the last bit through a JSON round trip: compare them rounded
        return json.loads(self._tok.to_str(), parse_float=lambda x: round(float(x), 9))

    def __eq__(self, other: object) -> bool:
        """Same vocabulary, model and pipeline (what :meth:`save` writes)."""
        return isinstance(other, SubwordTokenizer) and self._content() == other._content()

    __hash__ = None  # mutable wrapper, compared by content

    def __repr__(self) -> str:
        return f"SubwordTokenizer(model={self.model!r}, vocab_size={self.vocab_size})"


JOINT_FILE = "tokenizer.json"
SRC_FILE, TGT_FILE = "tokenizer.src.json", "tokenizer.tgt.json"


class TokenizerPair:
    """The source and target tokenizers of a translation model; possibly one shared vocabulary (§5.1).

    Args:
        src: tokenizer of the source language.
        tgt: tokenizer of the target language; pass the *same object* as ``src`` for a joint vocabulary.

    Attributes:
        shared: ``True`` when source and target use one joint vocabulary (``src is tgt``): the paper's set-up
            for En-De, and what tying all embeddings (§3.4) requires.

    Example:
        >>> pair = TokenizerPair.train(["ein Hund"], ["a dog"], vocab_size=40)
        >>> pair.shared, pair.src is pair.tgt
        (True, True)
    """

    def __init__(self, src: SubwordTokenizer, tgt: SubwordTokenizer) -> None:
        self.src = src
        self.tgt = tgt

    @property
    def shared(self) -> bool:
        return self.src is self.tgt

    @classmethod
    def train(
        cls,
        src_texts: Iterable[str],
        tgt_texts: Iterable[str],
        vocab_size: int,
        model: str = "bpe",
        joint: bool = True,
    ) -> TokenizerPair:
        """Train on the training side of a parallel corpus.

        Args:
            src_texts, tgt_texts: training sentences of each language.
            vocab_size: size of the joint vocabulary, or of each vocabulary when ``joint=False``.
            model: ``"bpe"``, ``"unigram"`` or ``"word"`` (see :meth:`SubwordTokenizer.train`).
            joint: one vocabulary learned from both sides (paper) or one per side.
        """
        src_texts, tgt_texts = list(src_texts), list(tgt_texts)
        if joint:
            tok = SubwordTokenizer.train(src_texts + tgt_texts, vocab_size, model)
            return cls(tok, tok)
        return cls(SubwordTokenizer.train(src_texts, vocab_size, model),
                   SubwordTokenizer.train(tgt_texts, vocab_size, model))

    def encode_pairs(
        self, src_texts: Sequence[str], tgt_texts: Sequence[str]
    ) -> list[tuple[list[int], list[int]]]:
        """Token ids of sentence pairs, ready for ``qkv.data.batching.collate``."""
        if len(src_texts) != len(tgt_texts):
            raise ValueError(f"need as many targets as sources, got {len(src_texts)} and {len(tgt_texts)}")
        return list(zip(self.src.encode_batch(src_texts), self.tgt.encode_batch(tgt_texts)))

    def save(self, folder: str | Path) -> Path:
        """Write ``tokenizer.json`` (joint) or ``tokenizer.src.json`` + ``tokenizer.tgt.json`` to ``folder``.

        Files of the other layout left in the folder by an earlier save are removed, so :meth:`load` is never
        ambiguous. Returns the folder.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.shared:
            self.src.save(folder / JOINT_FILE)
            stale = (SRC_FILE, TGT_FILE)
        else:
            self.src.save(folder / SRC_FILE)
            self.tgt.save(folder / TGT_FILE)
            stale = (JOINT_FILE,)
        for name in stale:
            (folder / name).unlink(missing_ok=True)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> TokenizerPair:
        """Load what :meth:`save` wrote; a joint file gives a pair with ``shared == True``."""
        folder = Path(folder)
        joint, src, tgt = folder / JOINT_FILE, folder / SRC_FILE, folder / TGT_FILE
        if joint.is_file():
            if src.is_file() or tgt.is_file():
                raise DataError(
                    f"{folder}: both {JOINT_FILE} and {SRC_FILE}/{TGT_FILE} exist; keep one layout"
                )
            tok = SubwordTokenizer.load(joint)
            return cls(tok, tok)
        if src.is_file() and tgt.is_file():
            return cls(SubwordTokenizer.load(src), SubwordTokenizer.load(tgt))
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else None
        raise FileNotFoundError(
            f"{folder}: no tokenizers: looked for {JOINT_FILE}, or {SRC_FILE} and {TGT_FILE}; "
            + (f"the folder contains: {', '.join(present) or 'nothing'}" if present is not None
               else "the folder does not exist")
        )

    def __repr__(self) -> str:
        if self.shared:
            return f"TokenizerPair(shared={self.src!r})"
        return f"TokenizerPair(src={self.src!r}, tgt={self.tgt!r})"


# -- a single tokenizer in a checkpoint folder (classifiers) ----------------------------------------------
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class TokenizerFile:
    """A classifier's :class:`~qkv.data.tokenizer.SubwordTokenizer` as checkpoint files.

    Pass it as ``tokenizers=`` to :func:`qkv.train.checkpoint.save_checkpoint`: ``save(folder)`` writes
    ``folder/tokenizer.json``; :meth:`load` reads it back.
    """

    tokenizer: SubwordTokenizer

    def save(self, folder: str | Path) -> Path:
        return self.tokenizer.save(Path(folder) / TOKENIZER_FILE)

    @staticmethod
    def load(folder: str | Path) -> SubwordTokenizer:
        return SubwordTokenizer.load(Path(folder) / TOKENIZER_FILE)
