"""What every exporter shares: loading the checkpoint to export, refusing what a format cannot express, and
writing the output folder atomically (nothing is written when the export is refused).

Legend: V vocabulary size, D d_model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qkv.data.tokenizer import SubwordTokenizer, TokenizerPair
from qkv.models.transformer import Transformer, TransformerConfig
from qkv.train.checkpoint import load_checkpoint, read_config, write_folder_atomically

EXPORT_INFO = "qkv_export.json"  # what was exported, from where: written beside every exported model


class ExportError(ValueError):
    """The model (or an option of it) cannot be exported exactly to the asked format."""


@dataclass
class Exportable:
    """A Transformer checkpoint ready to export: the model (eval mode, CPU, float32) and its tokenizers."""

    path: Path
    model: Transformer
    tokenizers: TokenizerPair

    @property
    def config(self) -> TransformerConfig:
        return self.model.config


def load_exportable(folder: str | Path) -> Exportable:
    """Load a qkv translation checkpoint folder; refuse anything but an encoder-decoder Transformer."""
    folder = Path(folder)
    arch = read_config(folder).get("arch", "transformer")
    if arch != "transformer":
        raise ExportError(
            f"{folder}: arch {arch!r} cannot be exported; only the Transformer (arch 'transformer') can"
        )
    loaded = load_checkpoint(folder, device="cpu")
    model = loaded.model.float().eval()
    return Exportable(folder, model, TokenizerPair.load(folder))


def refuse_unless(ok: bool, option: str, value: object, target: str, why: str) -> None:
    """Raise :class:`ExportError` naming the config option unless ``ok``."""
    if not ok:
        raise ExportError(f"{option}={value!r} cannot be exported to {target}: {why}")


def vocabulary(tokenizer: SubwordTokenizer) -> list[str]:
    """The token strings of ``tokenizer`` in id order (``V`` entries)."""
    return [tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)]


def write_output(out: str | Path, write: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Fill ``out`` through ``write(tmp)`` atomically; an existing non-empty ``out`` needs ``overwrite``."""
    return write_folder_atomically(out, write, replace=overwrite)
