"""SST-2 (GLUE's binary Stanford Sentiment Treebank): ``label<TAB>sentence`` files with a header row.

``train.tsv`` has 67,349 rows (whole sentences and their sub-phrases), ``dev.tsv`` 872 whole sentences; the
standard measure is accuracy on dev. Every row is checked: a malformed one is an error naming file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qkv.data.text import DataError


class SST2FormatError(DataError):
    """A row of an SST-2 TSV file is malformed (the message names the file and line)."""


@dataclass
class LabelledSentences:
    """Sentences with one integer label each (``labels[i]`` is the class of ``sentences[i]``)."""

    sentences: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.sentences)


def read_sst2(path: str | Path, n_classes: int = 2) -> LabelledSentences:
    """Read an SST-2 TSV file: a header ``label<TAB>sentence``, then one ``int<TAB>text`` row per line.

    The header's second name is not checked (GLUE's dev file says ``content``).

    Args:
        path: the ``.tsv`` file.
        n_classes: labels must be integers in ``[0, n_classes)``.

    Raises:
        FileNotFoundError: no such file.
        SST2FormatError: bad header, wrong number of fields, a label that is not an allowed integer, an empty
            sentence or invalid UTF-8, naming ``file:line`` and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SST-2 file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SST2FormatError(f"{path}: not valid UTF-8 ({err})") from None
    lines = text.splitlines()
    header = lines[0].split("\t") if lines else []
    if len(header) != 2 or header[0].strip() != "label":
        got = lines[0][:60] if lines else "an empty file"
        raise SST2FormatError(f"{path}:1: expected the header 'label<TAB>sentence', got {got!r}")
    sentences, labels = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise SST2FormatError(
                f"{path}:{number}: expected 2 tab-separated fields (label, sentence), got {len(fields)}: {line[:60]!r}"
            )
        label, sentence = fields[0].strip(), fields[1].strip()
        if not label.isdigit() or int(label) >= n_classes:
            raise SST2FormatError(f"{path}:{number}: expected a label in 0..{n_classes - 1}, got {fields[0][:20]!r}")
        if not sentence:
            raise SST2FormatError(f"{path}:{number}: empty sentence")
        sentences.append(sentence)
        labels.append(int(label))
    if not sentences:
        raise SST2FormatError(f"{path}: no rows after the header")
    return LabelledSentences(sentences, labels)


def find_sst2(data_dir: str | Path) -> dict[str, Path]:
    """The ``train`` and ``dev`` files of an SST-2 folder (``train.tsv``, ``dev.tsv``)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"SST-2 folder not found: {data_dir}")
    splits = {name: data_dir / f"{name}.tsv" for name in ("train", "dev")}
    for name, path in splits.items():
        if not path.is_file():
            raise FileNotFoundError(f"SST-2 {name} split not found: expected {path}")
    return splits
