"""Finding the train / val / test files of a parallel corpus laid out like Multi30k.

Multi30k (Elliott et al., 2016) is the small translation benchmark this project trains on in place of WMT
2014 (§5.1): 29,000 training, 1,014 validation and 1,000 test sentences (``test_2016_flickr``) of image
descriptions, in English, German, French and Czech. Its files are named ``{split}.{lang}[.gz]``:

    multi30k/train.de.gz  multi30k/train.en.gz  multi30k/val.de.gz  …  multi30k/test_2016_flickr.en.gz

Any folder with that layout works (the built-in demo corpus of :mod:`qkv.data.synthetic` uses it too).
"""

from __future__ import annotations

from pathlib import Path

from qkv.data.text import ParallelText, read_parallel

SPLITS = ("train", "val", "test")

# File-name stems tried for each split, in order.
SPLIT_STEMS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "val": ("val",),
    "test": ("test_2016_flickr", "test"),
}


def _find(data_dir: Path, stem: str, lang: str) -> Path | None:
    for name in (f"{stem}.{lang}", f"{stem}.{lang}.gz"):
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def find_splits(data_dir: str | Path, src_lang: str, tgt_lang: str) -> dict[str, tuple[Path, Path]]:
    """Locate the source and target file of each split in a Multi30k-style folder.

    For each split the stems of :data:`SPLIT_STEMS` are tried in order (``test_2016_flickr`` before ``test``),
    and for each stem ``{stem}.{lang}`` then ``{stem}.{lang}.gz``; a split is found when one stem has both
    languages.

    Args:
        data_dir: the folder, e.g. ``../shared/data/multi30k``.
        src_lang, tgt_lang: language suffixes, e.g. ``"de"`` and ``"en"`` (or ``"words"`` / ``"iso"``).

    Returns:
        ``{"train": (src_path, tgt_path), "val": (...), "test": (...)}``.

    Raises:
        FileNotFoundError: the folder is missing, or a split lacks a file; the message lists the names looked
            for and the files the folder does contain.

    Example:
        >>> find_splits("../shared/data/multi30k", "de", "en")["test"]  # doctest: +SKIP
        (PosixPath('../shared/data/multi30k/test_2016_flickr.de.gz'), PosixPath('.../test_2016_flickr.en.gz'))
    """
    data_dir = Path(data_dir)
    if src_lang == tgt_lang:
        raise ValueError(f"source and target language are both {src_lang!r}")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no such data folder")
    found: dict[str, tuple[Path, Path]] = {}
    for split in SPLITS:
        for stem in SPLIT_STEMS[split]:
            src, tgt = _find(data_dir, stem, src_lang), _find(data_dir, stem, tgt_lang)
            if src is not None and tgt is not None:
                found[split] = (src, tgt)
                break
        else:
            wanted = ", ".join(
                f"{stem}.{lang}[.gz]" for stem in SPLIT_STEMS[split] for lang in (src_lang, tgt_lang)
            )
            present = sorted(p.name for p in data_dir.iterdir() if p.is_file())
            shown = ", ".join(present[:40]) + (f", … ({len(present)} files)" if len(present) > 40 else "")
            raise FileNotFoundError(
                f"{data_dir}: no {split} split for {src_lang}->{tgt_lang}: looked for {wanted}; "
                f"the folder contains: {shown or 'no files'}"
            )
    return found


def read_splits(
    data_dir: str | Path,
    src_lang: str,
    tgt_lang: str,
    *,
    max_words: int | None = None,
    skip_invalid: bool = False,
) -> dict[str, ParallelText]:
    """Read all three splits found by :func:`find_splits` with :func:`qkv.data.text.read_parallel`.

    Example:
        >>> data = read_splits("../shared/data/multi30k", "de", "en")  # doctest: +SKIP
        >>> {split: len(pairs) for split, pairs in data.items()}  # doctest: +SKIP
        {'train': 29000, 'val': 1014, 'test': 1000}
    """
    return {
        split: read_parallel(src, tgt, max_words=max_words, skip_invalid=skip_invalid)
        for split, (src, tgt) in find_splits(data_dir, src_lang, tgt_lang).items()
    }


__all__ = ["SPLITS", "SPLIT_STEMS", "find_splits", "read_splits"]
