"""A trained translation model with its tokenizers: text in, text (and attention maps) out.

The one object the CLI (`qkv translate`, `qkv evaluate`, `qkv attention`, `qkv serve`) works with. It holds no
training state; load it from a checkpoint folder written by :mod:`qkv.train.checkpoint`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import torch
from torch import nn

from qkv.data.batching import collate
from qkv.data.tokenizer import SubwordTokenizer, TokenizerPair
from qkv.decode import decode_corpus, decode_corpus_nbest
from qkv.decode.corpus import open_progress
from qkv.decode.quantize import check_int8_device, decoding_copy, weight_versions
from qkv.models.transformer import AttentionMaps
from qkv.tasks.kinds import check_vocab_fits, expect_kind
from qkv.train.checkpoint import load_checkpoint
from qkv.train.precision import PRECISIONS, resolve_precision

#: the precisions a translator decodes in: those of training, and int8 linear layers (CPU)
DECODE_PRECISIONS = (*PRECISIONS, "int8")


def resolve_decode_precision(precision: str, device: str | torch.device) -> str:
    """``precision`` for decoding on ``device``: ``"int8"`` (dynamic quantization of the linear layers, CPU
    only: :mod:`qkv.decode.quantize`), else as :func:`qkv.train.precision.resolve_precision`."""
    if precision != "int8":
        return resolve_precision(precision, device)
    check_int8_device(device)
    return precision


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

    A ``str`` is one sentence and gives one ``str``; a list gives a list.

    Args:
        model: an encoder-decoder (:class:`qkv.Transformer` or an RNN baseline).
        tokenizers: its source and target tokenizers; neither may have more ids than the model's vocabulary.
        device: where the model runs.
        max_len_b: outputs stop at source length + ``max_len_b`` tokens (§6.1: 50).
        early_stopping: beam search ends a sentence once it holds ``beam_size`` finished hypotheses (Hugging
            Face's ``early_stopping=True``, CTranslate2's rule) instead of when no live beam can still beat them
            (``False``, the default: :mod:`qkv.decode.beam`).

    Example:
        >>> tr = Translator.load("runs/demo/best")                     # doctest: +SKIP
        >>> tr.translate("the third of may two thousand eleven")      # doctest: +SKIP
        '2011-05-03'
        >>> tr.translate(["third of may 2011", "may 4 2012"], beam_size=1)   # doctest: +SKIP
        ['2011-05-03', '2012-05-04']
    """

    kind = "translation"

    def __init__(
        self, model: nn.Module, tokenizers: TokenizerPair, device: str | torch.device = "cpu", max_len_b: int = 50,
        precision: str = "fp32", early_stopping: bool = False,
    ):  # fmt: skip
        if not (isinstance(max_len_b, int) and max_len_b >= 0):
            raise ValueError(f"max_len_b must be an int >= 0, got {max_len_b!r}")
        config = getattr(model, "config", None)
        for side, tokenizer in (("src", tokenizers.src), ("tgt", tokenizers.tgt)):
            check_vocab_fits(tokenizer, getattr(config, f"{side}_vocab_size", None), f"{side} tokenizer")
        self.device = torch.device(device)
        self.precision = resolve_decode_precision(precision, self.device)  # fp32, bf16 or int8
        self._low: tuple[tuple, nn.Module] | None = None  # ((precision, model, weight versions), its copy)
        self.max_len_b = max_len_b  # outputs stop at source length + max_len_b tokens (§6.1: 50)
        self.early_stopping = early_stopping  # the beam search's stopping rule (qkv.decode.beam)
        self.model = model.to(self.device).eval()
        self.tokenizers = tokenizers

    @classmethod
    def load(cls, checkpoint: str | Path, device: str | torch.device = "cpu", max_len_b: int = 50,
             precision: str = "fp32") -> Translator:  # fmt: skip
        """Load a checkpoint folder (model + tokenizers) written by :func:`qkv.train.checkpoint.save_checkpoint`;
        ``precision`` (``"fp32"``, ``"bf16"``, ``"auto"``: see :mod:`qkv.train.precision`; ``"int8"``: see
        :mod:`qkv.decode.quantize`) is the decoding's.

        A checkpoint of another kind (a classifier, a ViT) is refused with one line naming its kind.
        """
        expect_kind(checkpoint, "translation")
        loaded = load_checkpoint(checkpoint, device=device)
        tokenizers = TokenizerPair.load(loaded.path)
        try:
            return cls(loaded.model, tokenizers, device, max_len_b, precision=precision)
        except ValueError as err:
            raise ValueError(f"{loaded.path}: {err}") from None

    @property
    def src_tokenizer(self) -> SubwordTokenizer:
        return self.tokenizers.src

    @property
    def tgt_tokenizer(self) -> SubwordTokenizer:
        return self.tokenizers.tgt

    def encode_sources(self, sentences: list[str], *, first: int = 1, name: str | None = None) -> list[list[int]]:
        """Source token ids per sentence (without ``</s>``), refusing sentences too long for the model; the
        error names sentence ``first + i`` (a line of ``name``, when given)."""
        # the decoder may produce source length + max_len_b tokens, and positions stop at max_len
        limit = int(getattr(self.model.config, "max_len", 10**9)) - self.max_len_b - 1
        ids = self.src_tokenizer.encode_batch(sentences)
        for i, seq in enumerate(ids):
            if len(seq) + 1 > limit:
                where = f"{name}:{first + i}" if name else f"sentence {first + i}"
                raise ValueError(f"{where}: {len(seq)} subwords; this model accepts at most {limit - 1}")
        return ids

    @overload
    def translate(self, sentences: str, beam_size: int = 5, alpha: float = 0.6, batch_size: int = 64) -> str: ...
    @overload
    def translate(
        self, sentences: Sequence[str], beam_size: int = 5, alpha: float = 0.6, batch_size: int = 64,
        progress: Callable[..., Any] | None = None,
    ) -> list[str]: ...

    def translate(
        self, sentences: str | Sequence[str], beam_size: int = 5, alpha: float = 0.6, batch_size: int = 64,
        progress: Callable[..., Any] | None = None,
    ) -> str | list[str]:
        """Translate one sentence (a ``str``) or a list of them (batched, sorted by length for little padding;
        the order is kept). ``beam_size=1`` is greedy search; ``alpha`` is the length penalty of §6.1. An empty
        (or blank) sentence translates to an empty string. ``progress``: a ``tqdm``-like factory for a bar over
        the sentences (``None``: no bar)."""
        if isinstance(sentences, str):
            return self.translate([sentences], beam_size, alpha, batch_size)[0]
        return list(self.translate_stream(sentences, beam_size, alpha, batch_size, progress))

    def translate_nbest(
        self, sentences: str | Sequence[str], nbest: int, beam_size: int = 5, alpha: float = 0.6,
        batch_size: int = 64,
    ) -> list[list[tuple[str, float]]]:  # fmt: skip
        """The ``nbest`` best translations of each sentence (``nbest <= beam_size``), best first, each with its
        score log p(Y | x) / lp(Y). A ``str`` is one sentence (the result still has one list per sentence).

        Example:
            >>> tr.translate_nbest("Ein Hund.", nbest=2)      # doctest: +SKIP
            [[('A dog.', -0.41), ('A dog', -0.93)]]
        """
        sentences = [sentences] if isinstance(sentences, str) else list(sentences)
        hyps = decode_corpus_nbest(self.decoding_model(), self.encode_sources(sentences), nbest=nbest,
                                   beam_size=beam_size, alpha=alpha, max_len_b=self.max_len_b,
                                   batch_size=batch_size, early_stopping=self.early_stopping)  # fmt: skip
        return [[(self.tgt_tokenizer.decode(ids), score) for ids, score in options] for options in hyps]

    def translate_stream(
        self, sentences: Iterable[str], beam_size: int = 5, alpha: float = 0.6, batch_size: int = 64,
        progress: Callable[..., Any] | None = None, *, name: str | None = None,
    ) -> Iterator[str]:  # fmt: skip
        """Like :meth:`translate` but yields results chunk by chunk (for files and stdin; ``name`` appears in
        the error about a sentence that is too long, with its line)."""
        if isinstance(sentences, str):
            sentences = [sentences]  # one sentence, not its characters
        total = len(sentences) if isinstance(sentences, Sized) else None
        bar = open_progress(progress, total=total, desc="translate", unit="sent")
        try:
            chunk: list[str] = []
            done = 0
            for sentence in sentences:
                chunk.append(sentence)
                if len(chunk) == batch_size * 8:
                    yield from self._translate_chunk(chunk, beam_size, alpha, batch_size, done + 1, name, bar.update)
                    done += len(chunk)
                    chunk = []
            if chunk:
                yield from self._translate_chunk(chunk, beam_size, alpha, batch_size, done + 1, name, bar.update)
        finally:
            bar.close()

    def _translate_chunk(self, sentences: list[str], beam_size: int, alpha: float, batch_size: int,
                         first: int = 1, name: str | None = None,
                         on_batch: Callable[[int], Any] | None = None) -> list[str]:  # fmt: skip
        out = [""] * len(sentences)
        todo = [i for i, s in enumerate(sentences) if s.strip()]  # nothing to translate: an empty line
        if not todo:
            return out
        ids = self.encode_sources(sentences, first=first, name=name)
        hyps = decode_corpus(
            self.decoding_model(),
            [ids[i] for i in todo],
            beam_size=beam_size,
            alpha=alpha,
            max_len_b=self.max_len_b,
            batch_size=batch_size,
            on_batch=on_batch,
            early_stopping=self.early_stopping,
        )
        for i, hyp in zip(todo, hyps):
            out[i] = self.tgt_tokenizer.decode(hyp)
        return out

    def decoding_model(self) -> nn.Module:
        """The model the searches run: the decoding copy of :attr:`model` in :attr:`precision`
        (:func:`qkv.decode.quantize.decoding_copy`: pre-packed fp32 or bf16 weights on a CPU, or int8 linear
        layers; in fp32 elsewhere, :attr:`model` itself). Made once, and again when :attr:`model`,
        :attr:`precision` or any of the model's weights change (an optimizer step, a loaded state dict)."""
        key = (self.precision, self.model, weight_versions(self.model))
        if self._low is None or self._low[0] != key:
            self._low = (key, decoding_copy(self.model, self.precision))
        return self._low[1]

    @torch.inference_mode()
    def attention(
        self, source: str, target: str | None = None, beam_size: int = 5, alpha: float = 0.6
    ) -> AttentionView:
        """All attention maps for ``source`` and ``target`` (default: the model's own translation, searched with
        ``beam_size`` and length penalty ``alpha``)."""
        translation = None
        if target is None:
            target = translation = self.translate(source, beam_size=beam_size, alpha=alpha)
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
