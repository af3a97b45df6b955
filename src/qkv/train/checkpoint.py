"""Checkpoints: one folder per checkpoint, written atomically, loaded without arbitrary unpickling.

A checkpoint folder holds

- ``model.safetensors``: the weights (``safetensors.torch.save_model``: tied matrices are stored once);
- ``config.json``: ``{"arch", "model": <model config>, "train": <train config>, "step", "epoch", "metrics"}``;
- the tokenizer files, if a tokenizer object was given (anything with ``.save(folder)``, e.g.
  :class:`qkv.data.tokenizer.TokenizerPair`);
- ``trainer_state.pt`` (optional): optimizer, scheduler, sampler and RNG states, plain tensors and Python
  containers only, read back with ``torch.load(weights_only=True)``.

Writes are atomic: the folder is built beside the target as ``.NAME.tmp``, every file is fsync'ed, then the
old folder is renamed to ``.NAME.old``, the new one into place, and the old one deleted. A crash at any moment
leaves either the old or the new checkpoint; if it strikes between the two renames, :func:`load_checkpoint`
and the next :func:`save_checkpoint` put ``.NAME.old`` back.

§6.1: "For the base models, we used a single model obtained by averaging the last 5 checkpoints":
:func:`average_checkpoints`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file, save_model
from torch import Tensor, nn

from qkv.config import ConfigError
from qkv.models import registry

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAINER_STATE = "trainer_state.pt"


class CheckpointError(ValueError):
    """A checkpoint is corrupt, incomplete or does not match the model."""


# -- architectures: rebuilding a model from config.json (names from qkv.models.registry) ---------------------
def model_arch(model: nn.Module) -> str:
    """The ``arch`` in ``config.json`` (see :func:`qkv.models.registry.model_arch`; else ``model.arch`` or the
    class name, for models the registry does not know)."""
    try:
        return registry.model_arch(model)
    except (ConfigError, AttributeError):
        arch = getattr(model, "arch", None)
        return arch if isinstance(arch, str) else type(model).__name__.lower()


def model_config_dict(model: nn.Module) -> dict[str, Any] | None:
    config = getattr(model, "config", None)
    return config.to_dict() if hasattr(config, "to_dict") else None


def model_from_config(config: dict[str, Any], *, where: str = CONFIG) -> nn.Module:
    """Rebuild an untrained model from the contents of a ``config.json`` (``arch`` + ``model``)."""
    arch = config.get("arch", "transformer")
    if not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{where}: no 'model' config to rebuild the {arch} from (pass model=)")
    try:
        return registry.build_model(arch, config["model"])
    except ConfigError as err:
        raise CheckpointError(f"{where}: {err} (or pass model= to load_checkpoint)") from err


# -- atomic folder writes ----------------------------------------------------------------------------------
def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. directories on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _side_paths(folder: Path) -> tuple[Path, Path]:
    return folder.with_name(f".{folder.name}.tmp"), folder.with_name(f".{folder.name}.old")


def recover(folder: str | Path) -> None:
    """Undo an interrupted swap: if ``folder`` is missing but its ``.old`` copy exists, put it back."""
    folder = Path(folder)
    _, old = _side_paths(folder)
    if not folder.exists() and old.is_dir():
        os.replace(old, folder)


def _current_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def _usual_permissions(folder: Path) -> None:
    """Files ``0o666`` and folders ``0o777`` less the umask (e.g. 0644 / 0755), as ``open()`` would create them:
    some writers (safetensors) create their files 0600, and a checkpoint is meant to be shared."""
    mask = _current_umask()
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def write_folder_atomically(folder: str | Path, write: Callable[[Path], None], *, replace: bool = True) -> Path:
    """Call ``write(tmp)`` to fill a fresh temporary folder, fsync it, then swap it in place of ``folder``.

    The files get the usual permissions (``0o666`` less the umask), whatever the writer used. With
    ``replace=False`` an existing non-empty ``folder`` is refused (``ValueError``) before anything is written."""
    folder = Path(folder)
    if not replace and folder.exists():
        if not folder.is_dir():
            raise ValueError(f"{folder}: exists and is not a folder")
        if any(folder.iterdir()):
            raise ValueError(f"{folder}: folder exists and is not empty (pass --force to replace it)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    recover(folder)
    tmp, old = _side_paths(folder)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        _usual_permissions(tmp)
        for path in tmp.rglob("*"):
            if path.is_file():
                _fsync(path)
        _fsync(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    _fsync(folder.parent)
    shutil.rmtree(old, ignore_errors=True)
    return folder


# -- saving ------------------------------------------------------------------------------------------------
def save_checkpoint(
    folder: str | Path,
    model: nn.Module,
    *,
    train_config: dict[str, Any] | None = None,
    step: int = 0,
    epoch: int = 0,
    metrics: dict[str, Any] | None = None,
    tokenizers: Any = None,
    trainer_state: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    weights: dict[str, Tensor] | None = None,
    replace: bool = True,
) -> Path:
    """Write a checkpoint folder atomically (see the module docstring for its contents).

    Args:
        folder: where the checkpoint goes; an existing checkpoint there is replaced only once the new one is
            complete on disk.
        model: the (unwrapped) model; its ``config.to_dict()`` and :func:`model_arch` go to ``config.json``.
        train_config: training options to record (a dict).
        step, epoch, metrics: progress and validation results to record.
        tokenizers: ``None`` or an object with ``.save(folder)`` writing its files into the folder.
        trainer_state: optimizer/scheduler/sampler/RNG states (tensors and plain containers only).
        extra: more JSON-serializable entries for ``config.json``.
        weights: full (gathered) state dict to write instead of ``model``'s own tensors (FSDP).
        replace: ``False`` refuses a non-empty ``folder`` (``ValueError``) instead of replacing it.

    Returns:
        The checkpoint folder.
    """
    config = {
        "arch": model_arch(model),
        "model": model_config_dict(model),
        "train": train_config,
        "step": step,
        "epoch": epoch,
        "metrics": metrics or {},
        **(extra or {}),
    }

    def write(tmp: Path) -> None:
        if weights is None:
            save_model(model, str(tmp / WEIGHTS))
        else:
            save_file(_dedupe(weights), str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        if tokenizers is not None:
            tokenizers.save(tmp)
        if trainer_state is not None:
            torch.save(trainer_state, tmp / TRAINER_STATE)

    return write_folder_atomically(folder, write, replace=replace)


def _storage_key(tensor: Tensor) -> tuple:
    """Identifies the memory a tensor views: tied tensors (one storage under several names) share a key."""
    return (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))


def _dedupe(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Keep one name per shared storage (tied weights) and make every tensor contiguous, on the CPU."""
    seen: set[tuple] = set()
    out = {}
    for name, tensor in tensors.items():
        key = _storage_key(tensor)
        if key in seen:
            continue
        seen.add(key)
        out[name] = tensor.detach().cpu().contiguous()
    return out


def copy_checkpoint(source: str | Path, folder: str | Path, *, with_trainer_state: bool = False) -> Path:
    """Atomically copy a checkpoint folder (e.g. ``last`` to ``best``), by default without trainer state."""
    source = Path(source)

    def write(tmp: Path) -> None:
        for path in source.iterdir():
            if path.name == TRAINER_STATE and not with_trainer_state:
                continue
            if path.is_file():
                shutil.copy2(path, tmp / path.name)
            elif path.is_dir():
                shutil.copytree(path, tmp / path.name)

    return write_folder_atomically(folder, write)


# -- periodic checkpoints: naming and pruning (fairseq's checkpoint_utils) ----------------------------------
PERIODIC = "checkpoints"


def periodic_checkpoints(out_dir: str | Path) -> list[Path]:
    """The periodic checkpoints under ``out_dir/checkpoints``, oldest first (average the last k, §6.1)."""
    folder = Path(out_dir) / PERIODIC
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step_"))


def save_periodic(last: str | Path, out_dir: str | Path, step: int, keep: int) -> Path:
    """Copy the checkpoint ``last`` to ``out_dir/checkpoints/step_N`` and delete all but the ``keep`` newest."""
    saved = copy_checkpoint(last, Path(out_dir) / PERIODIC / f"step_{step:08d}")
    for old in periodic_checkpoints(out_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return saved


# -- loading -----------------------------------------------------------------------------------------------
def read_config(folder: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint folder (clear errors for a missing or invalid file)."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint config not found: {path}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from err
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{path}: not UTF-8 text: {err}") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


def _file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint weights not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err


def check_state_matches(model: nn.Module, shapes: dict[str, tuple[int, ...]], source: str) -> None:
    """Raise :class:`CheckpointError` unless tensors named ``shapes`` fill every tensor of ``model``.

    Tied tensors (one storage under several names) need only one of their names.
    """
    state = model.state_dict()
    groups: dict[tuple, list[str]] = {}
    for name, tensor in state.items():
        groups.setdefault(_storage_key(tensor), []).append(name)
    problems = []
    for names in groups.values():
        if not any(n in shapes for n in names):
            problems.append(f"missing tensor '{names[0]}' (expected shape {tuple(state[names[0]].shape)})")
    for name, shape in shapes.items():
        if name not in state:
            problems.append(f"unexpected tensor '{name}' with shape {shape} (the model has no such tensor)")
        elif tuple(state[name].shape) != shape:
            problems.append(f"tensor '{name}': expected shape {tuple(state[name].shape)}, got {shape}")
    if problems:
        shown = "; ".join(problems[:8]) + (f"; … {len(problems) - 8} more" if len(problems) > 8 else "")
        raise CheckpointError(f"{source} does not match the model: {shown}")


def load_weights(model: nn.Module, path: str | Path, device: str | torch.device | None = None) -> nn.Module:
    """Load ``model.safetensors`` (file or checkpoint folder) into ``model``, checking names and shapes."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS
    check_state_matches(model, _file_shapes(path), str(path))  # from the file's header, before reading the data
    _copy_into(model, load_file(str(path), device=str(device) if device is not None else "cpu"))
    return model


def load_state_dict(model: nn.Module, tensors: dict[str, Tensor], source: str = "state dict") -> None:
    """Copy ``tensors`` (names as :func:`save_checkpoint` writes them: tied tensors once) into ``model``."""
    check_state_matches(model, {k: tuple(v.shape) for k, v in tensors.items()}, source)
    _copy_into(model, tensors)


def _copy_into(model: nn.Module, tensors: dict[str, Tensor]) -> None:
    """Copy checked ``tensors`` (see :func:`check_state_matches`) into ``model``'s own tensors."""
    with torch.no_grad():
        state = model.state_dict()
        for name, tensor in tensors.items():
            state[name].copy_(tensor)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (in eval mode), its ``config.json`` and, if asked, the trainer state."""

    path: Path
    model: nn.Module
    config: dict[str, Any]
    trainer_state: dict[str, Any] | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.config.get("metrics") or {})

    @property
    def step(self) -> int:
        return int(self.config.get("step", 0))

    @property
    def epoch(self) -> int:
        return int(self.config.get("epoch", 0))


def load_trainer_state(folder: str | Path) -> dict[str, Any]:
    """``trainer_state.pt`` read with ``torch.load(weights_only=True)``: tensors and plain containers only."""
    path = Path(folder) / TRAINER_STATE
    if not path.is_file():
        raise FileNotFoundError(f"trainer state not found: {path} (best/ and periodic checkpoints have none)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt zip, truncated file, or a forbidden (non-tensor) object
        raise CheckpointError(f"{path}: cannot read the trainer state ({type(err).__name__}: {err})") from err


def load_checkpoint(
    path: str | Path,
    model: nn.Module | None = None,
    *,
    device: str | torch.device = "cpu",
    trainer_state: bool = False,
) -> Checkpoint:
    """Load a checkpoint folder written by :func:`save_checkpoint`.

    Args:
        path: the checkpoint folder.
        model: a model to load the weights into; ``None`` rebuilds it from ``config.json`` (``arch`` +
            ``model``, see :mod:`qkv.models.registry`).
        device: where the weights go.
        trainer_state: also read ``trainer_state.pt`` (to resume training).

    Raises:
        FileNotFoundError: the folder or one of its files is missing.
        CheckpointError: a file is corrupt, or a tensor is missing, unexpected or of the wrong shape (the
            message names the file and the tensor, expected vs got).
    """
    folder = Path(path)
    recover(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {folder}")
    config = read_config(folder)
    if model is None:
        model = model_from_config(config, where=str(folder / CONFIG))
    model.to(device)
    load_weights(model, folder / WEIGHTS, device)
    model.eval()
    state = load_trainer_state(folder) if trainer_state else None
    return Checkpoint(folder, model, config, state)


def average_checkpoints(paths: Sequence[str | Path]) -> dict[str, Tensor]:
    """Element-wise mean of the weights of several checkpoints (§6.1: the last 5 or 20 checkpoints).

    Args:
        paths: checkpoint folders (or ``model.safetensors`` files) of the same model.

    Returns:
        A state dict (names as in ``model.safetensors``; load it with :func:`load_state_dict`). Floating
        tensors are averaged in float64 and cast back; other tensors must be equal and are kept.
    """
    if not paths:
        raise ValueError("average_checkpoints needs at least one checkpoint")
    files = [Path(p) / WEIGHTS if Path(p).is_dir() else Path(p) for p in paths]
    first_shapes = _file_shapes(files[0])
    total: dict[str, Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for file in files:
        shapes = _file_shapes(file)
        if shapes.keys() != first_shapes.keys():
            diff = sorted(set(shapes) ^ set(first_shapes))
            raise CheckpointError(f"{file}: tensor names differ from {files[0]}: {diff[:8]}")
        for name, tensor in load_file(str(file)).items():
            if tuple(tensor.shape) != first_shapes[name]:
                raise CheckpointError(
                    f"{file}: tensor '{name}': expected shape {first_shapes[name]} (as in {files[0]}), "
                    f"got {tuple(tensor.shape)}"
                )
            if not tensor.is_floating_point():
                if name in total and not torch.equal(total[name], tensor):
                    raise CheckpointError(f"{file}: non-float tensor '{name}' differs from {files[0]}")
                total[name] = tensor
                continue
            dtypes[name] = tensor.dtype
            total[name] = total[name] + tensor.double() if name in total else tensor.double()
    return {name: (t / len(files)).to(dtypes[name]) if name in dtypes else t for name, t in total.items()}
