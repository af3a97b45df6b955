"""Reading text corpora: one sentence a line, plain or gzip, strict UTF-8; errors name the file and line.

A parallel corpus (§5.1: WMT 2014 En-De, here Multi30k) is two files with the same number of lines, line *i*
of one being the translation of line *i* of the other. :func:`read_parallel` checks exactly that and reports
every bad line as ``file:line: problem``, or, with ``skip_invalid=True``, drops the bad pairs and counts them.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

# Why read_parallel(..., skip_invalid=True) may drop a pair: the keys of ParallelText.dropped.
EMPTY = "empty"
NOT_UTF8 = "not_utf8"
NUL_BYTE = "nul_byte"
TOO_LONG = "too_long"
REASONS = (EMPTY, NOT_UTF8, NUL_BYTE, TOO_LONG)


class DataError(ValueError):
    """A data file is missing, malformed or inconsistent; the message names the file and (1-based) line."""


def _open_binary(path: Path):
    """Open ``path`` for reading bytes, decompressing it when it ends in ``.gz``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _raw_lines(stream: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a binary stream without their ends: ``\\n``, ``\\r\\n`` and a lone ``\\r`` (old Mac files)
    each end a line, as in Python's universal newlines; Unicode line separators do not."""
    for chunk in stream:  # split on b"\n"
        chunk = chunk[:-1] if chunk.endswith(b"\n") else chunk
        chunk = chunk[:-1] if chunk.endswith(b"\r") else chunk
        yield from chunk.split(b"\r")


def decode_line(raw: bytes, first: bool = False) -> tuple[str | None, str, str]:
    """``(text, problem, reason)`` of one line's bytes: the text stripped of surrounding whitespace, or
    ``None`` with the problem (``"not valid UTF-8 (byte 0xff at byte 3)"``, ``"a NUL byte at byte 5"``) and its
    reason (:data:`NOT_UTF8`, :data:`NUL_BYTE`). ``first``: the file's first line (a byte-order mark goes)."""
    if first and raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark is not text
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return None, f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at byte {err.start + 1})", NOT_UTF8
    if "\x00" in text:
        return None, f"a NUL byte at byte {raw.index(0) + 1}", NUL_BYTE
    return text.strip(), "", ""


def iter_lines(stream: Iterable[bytes]) -> Iterator[tuple[int, str | None, str, str]]:
    """Yield ``(line_number, text, problem, reason)`` for each line of a binary stream (see
    :func:`decode_line`); ``line_number`` is 1-based."""
    for number, raw in enumerate(_raw_lines(stream), start=1):
        yield (number, *decode_line(raw, first=number == 1))


def _iter_lines(path: str | Path) -> Iterator[tuple[int, str | None, str, str]]:
    """:func:`iter_lines` of a file (plain or gzip); a corrupt gzip stream is a :class:`DataError`."""
    path = Path(path)
    with _open_binary(path) as f:
        yield from iter_lines(_checked(f, path))


def _checked(stream, path: Path) -> Iterator[bytes]:
    """``stream``'s chunks, a corrupt gzip stream turned into a :class:`DataError`."""
    try:
        yield from stream
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read compressed file: {err}") from err


def read_stream(stream: Iterable[bytes], name: str = "<stdin>") -> Iterator[str]:
    """The stripped lines of a binary stream (e.g. ``sys.stdin.buffer``), lazily; a line that is not UTF-8
    or holds a NUL byte is a :class:`DataError` ``"<stdin>:3: not valid UTF-8 (...)"``."""
    for number, text, problem, _ in iter_lines(stream):
        if text is None:
            raise DataError(f"{name}:{number}: {problem}")
        yield text


def check_text(text: str, name: str) -> str:
    """``text`` (e.g. a command-line argument) if it is valid UTF-8 without NUL bytes, else a
    :class:`DataError` naming ``name`` (arguments that are not UTF-8 arrive with surrogate escapes)."""
    _, problem, _ = decode_line(text.encode("utf-8", "surrogateescape"))
    if problem:
        raise DataError(f"{name}: {problem}")
    return text


def read_lines(path: str | Path) -> list[str]:
    """Read a text file (plain, or gzip when the name ends in ``.gz``) into a list of stripped lines.

    Empty lines are kept (as ``""``) so that line *i* of the result is line *i + 1* of the file; ``\\n``,
    ``\\r\\n`` and a lone ``\\r`` end a line.

    Args:
        path: the file.

    Returns:
        One string per line, without the newline and surrounding whitespace.

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: a line is not valid UTF-8 (``"train.de.gz:1234: not valid UTF-8 (...)"``) or holds a NUL
            byte, or the gzip stream is corrupt.

    Example:
        >>> read_lines("data/multi30k/val.en.gz")[:1]  # doctest: +SKIP
        ['A group of men are loading cotton onto a truck']
    """
    with _open_binary(Path(path)) as f:
        return list(read_stream(_checked(f, Path(path)), str(path)))


@dataclass
class ParallelText:
    """Sentence pairs read by :func:`read_parallel`.

    Attributes:
        src: source sentences.
        tgt: target sentences, ``tgt[i]`` translating ``src[i]``.
        dropped: reason (``"empty"``, ``"not_utf8"``, ``"nul_byte"``, ``"too_long"``) -> number of pairs
            dropped for it; only reasons that occurred are present, so it is empty (falsy) when nothing was
            dropped.
        lines: the 1-based line number in the files of each pair (empty when not read from files).
        paths: the source and target files (``None`` when not read from files).
    """

    src: list[str]
    tgt: list[str]
    dropped: dict[str, int] = field(default_factory=dict)
    lines: list[int] = field(default_factory=list)
    paths: tuple[Path, Path] | None = None

    def __post_init__(self) -> None:
        if len(self.src) != len(self.tgt):
            raise DataError(f"ParallelText needs as many targets as sources, got {len(self.src)} and "
                            f"{len(self.tgt)}")

    def __len__(self) -> int:
        return len(self.src)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(zip(self.src, self.tgt))

    def __getitem__(self, i: int) -> tuple[str, str]:
        return self.src[i], self.tgt[i]

    @property
    def n_dropped(self) -> int:
        """Total number of pairs dropped."""
        return sum(self.dropped.values())

    def where(self, i: int, side: int = 0) -> str:
        """``"train.de:123"``: the file (``side`` 0: source, 1: target) and line of pair ``i``."""
        if self.paths is None or not self.lines:
            return f"pair {i + 1}"
        return f"{self.paths[side]}:{self.lines[i]}"

    def drop(self, indices: Iterable[int], reason: str) -> None:
        """Remove the pairs at ``indices`` and count them under ``reason`` in :attr:`dropped`."""
        gone = set(indices)
        if not gone:
            return
        keep = [i for i in range(len(self)) if i not in gone]
        self.src, self.tgt = [self.src[i] for i in keep], [self.tgt[i] for i in keep]
        if self.lines:
            self.lines = [self.lines[i] for i in keep]
        self.dropped[reason] = self.dropped.get(reason, 0) + len(gone)


def _line_problem(text: str | None, problem: str, reason: str, max_words: int | None) -> tuple[str, str] | None:
    """``(reason, message)`` when a line is unusable, else ``None``."""
    if text is None:
        return reason, problem
    if not text:
        return EMPTY, "empty line"
    if max_words is not None:
        n_words = len(text.split())
        if n_words > max_words:
            return TOO_LONG, f"{n_words} words, more than max_words={max_words}"
    return None


def read_parallel(
    src_path: str | Path,
    tgt_path: str | Path,
    *,
    max_words: int | None = None,
    skip_invalid: bool = False,
) -> ParallelText:
    """Read a parallel corpus: two files, one sentence a line, line *i* of each a translation of the other.

    Every line is checked: empty lines, bytes that are not UTF-8, NUL bytes and sentences of more than ``max_words``
    whitespace-separated words are errors that name the file and the 1-based line, e.g.
    ``"train.de.gz:1234: empty line"``. With ``skip_invalid=True`` such a pair is dropped instead and counted
    under its reason in ``ParallelText.dropped`` (a pair with two problems is counted once, for the source
    side's). Files with different numbers of lines are always an error: the sentences no longer line up.

    Args:
        src_path, tgt_path: the source and target files (plain, or gzip when the name ends in ``.gz``).
        max_words: the longest sentence accepted, in words (``None``: no limit).
        skip_invalid: drop bad pairs (and count them) instead of raising.

    Returns:
        A :class:`ParallelText` with the surviving pairs in file order.

    Raises:
        FileNotFoundError: a file does not exist.
        DataError: a bad line (without ``skip_invalid``), or the line counts differ.

    Example:
        >>> data = read_parallel("multi30k/val.de.gz", "multi30k/val.en.gz", max_words=100)  # doctest: +SKIP
        >>> len(data), data.dropped  # doctest: +SKIP
        (1014, {})
    """
    if max_words is not None and max_words < 1:
        raise ValueError(f"max_words must be a positive number of words or None, got {max_words}")
    src_path, tgt_path = Path(src_path), Path(tgt_path)
    out = ParallelText([], [], paths=(src_path, tgt_path))
    n_src = n_tgt = 0
    for src_line, tgt_line in zip_longest(_iter_lines(src_path), _iter_lines(tgt_path)):
        n_src += src_line is not None
        n_tgt += tgt_line is not None
        if src_line is None or tgt_line is None:
            continue  # one file is longer: count its remaining lines, then report the mismatch below
        number, src, src_problem, src_reason = src_line
        _, tgt, tgt_problem, tgt_reason = tgt_line
        bad = None
        for path, text, problem, reason in ((src_path, src, src_problem, src_reason),
                                            (tgt_path, tgt, tgt_problem, tgt_reason)):
            bad = _line_problem(text, problem, reason, max_words)
            if bad is not None:
                if not skip_invalid:
                    raise DataError(f"{path}:{number}: {bad[1]}")
                break
        if bad is not None:
            out.dropped[bad[0]] = out.dropped.get(bad[0], 0) + 1
            continue
        out.src.append(src)
        out.tgt.append(tgt)
        out.lines.append(number)
    if n_src != n_tgt:
        (longer, n_long), (shorter, n_short) = sorted(
            ((src_path, n_src), (tgt_path, n_tgt)), key=lambda item: -item[1]
        )
        raise DataError(
            f"{longer}:{n_short + 1}: line count mismatch: {longer} has {n_long} lines but {shorter} has "
            f"{n_short}; the two sides of a parallel corpus must line up"
        )
    return out
