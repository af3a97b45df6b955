"""A trained translation model with its tokenizers: text in, text (and attention maps) out.

The one object the CLI (`qkv translate`, `qkv evaluate`, `qkv attention`, `qkv serve`) works with. It holds no
training state; load it from a checkpoint folder written by :mod:`qkv.train.checkpoint`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from qkv.data.batching import collate
from qkv.data.tokenizer import SubwordTokenizer, TokenizerPair
from qkv.decode import decode_corpus
from qkv.models.transformer import AttentionMaps
from qkv.train.checkpoint import load_checkpoint
from qkv.train.precision import autocast, resolve_precision


@dataclass
class AttentionView:
    """Every attention map of one sentence pair, with the tokens on each axis.

    ``src_tokens`` label the encoder positions (source subwords + ``</s>``); ``tgt_tokens`` label the decoder
    positions, i.e. the target as fed to the decoder (``<s>`` + target subwords). ``maps`` hold tensors with
    batch size 1: ``encoder_self[l]`` ``(1, H, S, S)``, ``decoder_self[l]`` ``(1, H, T, T)``, ``cross[l]``
    ``(1, H, T, S)``.
    """

    src_tokens: list[str]
    tgt_tokens: list[str]
    maps: AttentionMaps
    translation: str | None  # the model's own translation, when no target was given


class Translator:
    """Translate text with a model and its :class:`~qkv.data.tokenizer.TokenizerPair`.

    Example:
        >>> tr = Translator.load("runs/demo/best")                     # doctest: +SKIP
        >>> tr.translate(["the third of may two thousand eleven"])     # doctest: +SKIP
        ['2011-05-03']
    """

    def __init__(
        self, model: nn.Module, tokenizers: TokenizerPair, device: str | torch.device = "cpu", max_len_b: int = 50,
        precision: str = "fp32",
    ):  # fmt: skip
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)  # decoding under bf16 autocast, or fp32
        self.max_len_b = max_len_b  # outputs stop at source length + max_len_b tokens (§6.1: 50)
        self.model = model.to(self.device).eval()
        self.tokenizers = tokenizers

    @classmethod
    def load(cls, checkpoint: str | Path, device: str | torch.device = "cpu", precision: str = "fp32") -> Translator:
        """Load a checkpoint folder (model + tokenizers) written by :func:`qkv.train.checkpoint.save_checkpoint`;
        ``precision`` (``"fp32"``, ``"bf16"``, ``"auto"``: see :mod:`qkv.train.precision`) is the decoding's."""
        loaded = load_checkpoint(checkpoint, device=device)
        return cls(loaded.model, TokenizerPair.load(loaded.path), device, precision=precision)

    @property
    def src_tokenizer(self) -> SubwordTokenizer:
        return self.tokenizers.src

    @property
    def tgt_tokenizer(self) -> SubwordTokenizer:
        return self.tokenizers.tgt

    def encode_sources(self, sentences: list[str]) -> list[list[int]]:
        """Source token ids per sentence (without ``</s>``), refusing sentences too long for the model."""
        # the decoder may produce source length + max_len_b tokens, and positions stop at max_len
        limit = int(getattr(self.model.config, "max_len", 10**9)) - self.max_len_b - 1
        ids = self.src_tokenizer.encode_batch(sentences)
        for i, seq in enumerate(ids):
            if len(seq) + 1 > limit:
                raise ValueError(f"sentence {i + 1} has {len(seq)} subwords; this model accepts at most {limit - 1}")
        return ids

    def translate(
        self, sentences: list[str], beam_size: int = 5, alpha: float = 0.6, batch_size: int = 64
    ) -> list[str]:
        """Translate a list of sentences (batched, sorted by length for little padding); order is kept."""
        return list(self.translate_stream(sentences, beam_size, alpha, batch_size))

    def translate_stream(
        self, sentences: Iterable[str], beam_size: int = 5, alpha: float = 0.6, batch_size: int = 64
    ) -> Iterator[str]:
        """Like :meth:`translate` but yields results chunk by chunk (for files and stdin)."""
        chunk: list[str] = []
        for sentence in sentences:
            chunk.append(sentence)
            if len(chunk) == batch_size * 8:
                yield from self._translate_chunk(chunk, beam_size, alpha, batch_size)
                chunk = []
        if chunk:
            yield from self._translate_chunk(chunk, beam_size, alpha, batch_size)

    def _translate_chunk(self, sentences: list[str], beam_size: int, alpha: float, batch_size: int) -> list[str]:
        ids = self.encode_sources(sentences)
        with autocast(self.device, self.precision == "bf16"):  # one context: the bf16 weight copies are made once
            hyps = decode_corpus(
                self.model, ids, beam_size=beam_size, alpha=alpha, max_len_b=self.max_len_b, batch_size=batch_size
            )
        return [self.tgt_tokenizer.decode(y) for y in hyps]

    @torch.inference_mode()
    def attention(self, source: str, target: str | None = None, beam_size: int = 5) -> AttentionView:
        """All attention maps for ``source`` and ``target`` (default: the model's own translation)."""
        translation = None
        if target is None:
            target = translation = self.translate([source], beam_size=beam_size)[0]
        batch = collate([(self.encode_sources([source])[0], self.tgt_tokenizer.encode(target))]).to(self.device)
        _, maps = self.model(batch.src, batch.tgt_in, return_attention=True)  # (1, S), (1, T) in
        src_tokens = [*self.src_tokenizer.tokens(source), "</s>"]
        tgt_tokens = ["<s>", *self.tgt_tokenizer.tokens(target)]
        maps = AttentionMaps(
            [m.float().cpu() for m in maps.encoder_self],
            [m.float().cpu() for m in maps.decoder_self],
            [m.float().cpu() for m in maps.cross],
        )
        return AttentionView(src_tokens, tgt_tokens, maps, translation)
