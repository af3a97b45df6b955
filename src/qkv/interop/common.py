"""What every Hugging Face importer shares: the error, the optional extra, reading a folder's config and weights,
and copying named tensors into a qkv model with every name and shape checked.

A Hugging Face model folder (``save_pretrained``) holds ``config.json`` (``model_type``, ``architectures`` and
the sizes) and the weights as ``model.safetensors`` (possibly sharded, ``model.safetensors.index.json``) or
``pytorch_model.bin``. The importers read the tensors straight from those files (names of transformers 4.x and
5.x both understood, see :meth:`HFWeights.get`) and never keep a Hugging Face module: the weights end up in
qkv's own modules.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import Tensor, nn

EXTRA = "hf"  # pip install 'qkv[hf]'


class HFImportError(ValueError):
    """A Hugging Face folder qkv cannot import faithfully; the message names the folder and the field."""


class MissingExtraError(HFImportError, ImportError):
    """An optional package of the ``hf`` extra (transformers, sentencepiece) is not installed."""


def fail(folder: str | Path, field: str, message: str) -> NoReturn:
    """Raise :class:`HFImportError` as one line: ``folder: field: message``."""
    raise HFImportError(f"{folder}: {field}: {message}")


def require(module: str, what: str = "importing a Hugging Face model"):
    """Import an optional dependency of the ``hf`` extra, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"{what} needs the Python package {module!r}, which is not installed: pip install 'qkv[{EXTRA}]'"
        ) from err


def read_json(folder: Path, name: str, *, required: bool = True) -> dict[str, Any] | None:
    """A JSON object file of the folder (``None`` when absent and not ``required``)."""
    path = folder / name
    if not path.is_file():
        if required:
            fail(folder, name, "file not found")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        fail(folder, name, f"not valid JSON ({err})")
    if not isinstance(data, dict):
        fail(folder, name, f"expected a JSON object, got {type(data).__name__}")
    return data


def hf_config(folder: Path, raw: dict[str, Any]):
    """The transformers config object of the folder: every field, with transformers' defaults filled in."""
    transformers = require("transformers")
    try:
        return transformers.AutoConfig.from_pretrained(str(folder))
    except Exception as err:  # transformers raises many kinds; one line naming the folder is what the user needs
        fail(folder, "config.json", f"transformers cannot read it ({str(err).splitlines()[0]})")


def expect(folder: Path, config: Any, field: str, allowed: tuple, default: Any = None) -> Any:
    """The value of ``config.field`` (or ``config[field]`` for a dict), refused unless it is one of ``allowed``."""
    value = config.get(field, default) if isinstance(config, dict) else getattr(config, field, default)
    if value not in allowed:
        shown = " or ".join(repr(a) for a in allowed)
        fail(folder, field, f"qkv supports {shown} only, got {value!r}")
    return value


def _read_weight_files(folder: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        files = [folder / "model.safetensors"]
    elif index.is_file():
        shards = sorted(set((read_json(folder, index.name) or {}).get("weight_map", {}).values()))
        files = [folder / s for s in shards]
    elif (folder / "pytorch_model.bin").is_file():
        try:
            return dict(torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True))
        except Exception as err:  # pickle errors of many kinds
            fail(folder, "pytorch_model.bin", f"not a readable PyTorch state dict ({err})")
    else:
        fail(folder, "weights", "no model.safetensors, model.safetensors.index.json or pytorch_model.bin "
             "(TensorFlow/Flax-only folders are not supported)")
    tensors: dict[str, Tensor] = {}
    for path in files:
        if not path.is_file():
            fail(folder, path.name, "weight shard listed in the index but not found")
        try:
            tensors.update(load_file(str(path)))
        except Exception as err:  # safetensors raises its own error types
            fail(folder, path.name, f"not a readable safetensors file ({err})")
    return tensors


class HFWeights:
    """The tensors of a Hugging Face folder, looked up by name; remembers which were used.

    Args:
        folder: the model folder (for messages).
        tensors: name -> tensor (default: read from the folder's weight files).
    """

    def __init__(self, folder: Path, tensors: dict[str, Tensor] | None = None) -> None:
        self.folder = folder
        self.tensors = _read_weight_files(folder) if tensors is None else tensors
        self.used: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self.tensors

    def get(self, *names: str) -> Tensor:
        """The first tensor found among ``names`` (aliases: transformers 5.x / 4.x names, ``weight``/``gamma``)."""
        for name in names:
            if name in self.tensors:
                self.used.add(name)
                return self.tensors[name].float()
        fail(self.folder, names[0], "weight not found in the checkpoint")

    def check_all_used(self, ignore: tuple[str, ...] = ()) -> None:
        """Refuse weights that were not mapped (a part of the model qkv would silently drop)."""
        left = sorted(n for n in self.tensors if n not in self.used and not n.startswith(ignore))
        if left:
            more = f" and {len(left) - 3} more" if len(left) > 3 else ""
            fail(self.folder, left[0], f"weight qkv has no place for ({', '.join(left[:3])}{more})")


def linear(state: dict[str, Tensor], weights: HFWeights, qkv_name: str, *hf_names: str) -> None:
    """``state[qkv_name.weight/bias]`` from the first of ``hf_names`` (each a module prefix) with both tensors."""
    for hf in hf_names:
        if weights.has(f"{hf}.weight") or weights.has(f"{hf}.gamma"):
            state[f"{qkv_name}.weight"] = weights.get(f"{hf}.weight", f"{hf}.gamma")
            if weights.has(f"{hf}.bias") or weights.has(f"{hf}.beta"):
                state[f"{qkv_name}.bias"] = weights.get(f"{hf}.bias", f"{hf}.beta")
            return
    fail(weights.folder, f"{hf_names[0]}.weight", "weight not found in the checkpoint")


def load_into(model: nn.Module, state: dict[str, Tensor], folder: Path) -> nn.Module:
    """Copy ``state`` into ``model``: every tensor of the model must be given (tied ones by any of their names),
    with its exact shape; nothing else may be given. Returns the model in eval mode."""
    own = model.state_dict()
    for name, tensor in state.items():
        if name not in own:
            fail(folder, name, "the qkv model has no such tensor (importer bug)")
        if tuple(own[name].shape) != tuple(tensor.shape):
            fail(folder, name, f"shape {tuple(tensor.shape)} does not match qkv's {tuple(own[name].shape)}")
    given = {own[n].data_ptr() for n in state}
    missing = [n for n, t in own.items() if n not in state and t.data_ptr() not in given]
    if missing:
        fail(folder, missing[0], "no weight of the checkpoint maps onto this tensor of the qkv model")
    with torch.no_grad():
        for name, tensor in state.items():
            own[name].copy_(tensor)
    return model.eval()
