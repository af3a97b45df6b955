"""The ``qkv`` argument parser: defaults and examples in every ``--help``, one-line errors, ``--config FILE``.

Every parser of the command line is a :class:`Parser` (sub-commands inherit the class), so every ``--help``
shows the options' defaults beside the description's own layout (the examples), and every parse error is one
line on stderr with exit 2.

``--config FILE`` (YAML or JSON; :func:`add_config_option`) fills in options: its values become the
command's defaults, so flags given on the command line win, whatever their order. A file is either

- a mapping of option names to values (``max_tokens: 2048``; the flag's name, ``epochs``, or the config
  field's, ``max_epochs``; dashes or underscores), unknown names refused with the list of known ones; or
- a checkpoint's ``config.json`` (``{"arch", "model", "train", ...}``): its recorded ``"options"`` (the options
  of the command that wrote it, see :func:`recorded_options`) when present, else what the command's
  :class:`ConfigFile` reads from its ``train`` / ``model`` sections; so a run can be repeated from its folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qkv.cli.options import ConfigOptions
from qkv.config import ConfigError

#: dests that describe one invocation, not the run: never written to, nor read as a recipe from, a checkpoint
NOT_RECORDED = frozenset({"func", "command", "config", "out", "resume", "overwrite", "help", "version", "argv"})


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs (the examples) keep their layout; each option's help ends with its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if "default" in text.lower() or not action.option_strings or d is None or d is False or d == []:
            return text
        if d is argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with :class:`HelpFormatter`, one-line errors and ``--config`` files."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        given = kwargs.get("formatter_class")
        if not (isinstance(given, type) and issubclass(given, HelpFormatter)):
            kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)
        self.config_file: ConfigFile | None = None

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args: Sequence[str] | None = None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        path = _config_path(args) if self.config_file is not None else None
        if path is None:
            return super().parse_known_args(args, namespace)
        try:
            values = self.config_file.read(path, self)
        except ConfigError as err:
            self.error(f"--config {path}: {err}")
        with _defaults_from(self, values):
            return super().parse_known_args(args, namespace)


def _config_path(args: list[str]) -> str | None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(args)
    return known.config


@contextmanager
def _defaults_from(parser: argparse.ArgumentParser, values: Mapping[str, Any]) -> Iterator[None]:
    """The file's values as the parser's defaults (options it gives are no longer required), for one parse."""
    saved = [(a, a.default, a.required) for a in parser._actions if a.dest in values]
    try:
        for action, _, _ in saved:
            action.default, action.required = values[action.dest], False
        yield
    finally:
        for action, default, required in saved:
            action.default, action.required = default, required


# -- reading a file ------------------------------------------------------------------------------------------
def load_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML (``.yaml`` / ``.yml``, needs PyYAML) or JSON file holding one mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("no such file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError("reading YAML needs PyYAML: pip install pyyaml (or 'qkv[config]'), or use JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"not valid YAML: {' '.join(str(err).split())}") from None
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"not valid JSON: {err}") from None
    else:
        raise ConfigError(f"expected a .yaml, .yml or .json file, got {path.suffix or 'no suffix'!r}")
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of option names to values, got {type(data).__name__}")
    return data


def is_checkpoint_config(data: Mapping[str, Any]) -> bool:
    """A checkpoint's ``config.json`` (``arch`` + ``model`` sections), rather than a file of options."""
    return "arch" in data and isinstance(data.get("model"), dict)


def model_overrides(model: Mapping[str, Any], derived: Sequence[str]) -> dict[str, Any]:
    """A checkpoint's ``model`` section as ``--set`` overrides, without the fields the data decides."""
    return {"set": {k: v for k, v in model.items() if k not in derived}}


@dataclass(frozen=True)
class ConfigFile:
    """What ``--config`` of one command reads.

    Args:
        command: the command's words (``"classify train"``): a file recorded by another command is refused.
        sections: the :class:`ConfigOptions` of the command (their field names are accepted as keys).
        train: the one of them that a checkpoint's ``"train"`` section holds.
        from_checkpoint: the rest of a checkpoint's ``config.json`` (one without recorded ``"options"``) as
            option values, e.g. ``arch`` and the ``model`` section as ``--set`` overrides.
    """

    command: str
    sections: Sequence[ConfigOptions] = ()
    train: ConfigOptions | None = None
    from_checkpoint: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None

    def flat(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The file's contents as ``{option: value}`` (a checkpoint's ``config.json`` unpacked)."""
        data = dict(data)
        written_by = data.pop("command", None)
        if written_by is not None and written_by != self.command:
            raise ConfigError(f"recorded by `qkv {written_by}`, not `qkv {self.command}`")
        if not is_checkpoint_config(data):
            return data
        if isinstance(data.get("options"), dict):
            return {k: v for k, v in data["options"].items() if k not in NOT_RECORDED}
        out = dict(self.from_checkpoint(data)) if self.from_checkpoint else {}
        if self.train is not None and isinstance(data.get("train"), dict):
            names = {f.name for f in self.train.fields()}
            # a field an older qkv wrote and this one dropped is harmless when it was off (None)
            out.update({k: v for k, v in data["train"].items() if k in names or v is not None})
        return out

    def read(self, path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
        """``{dest: value}`` for the parser, each value checked as if it had been typed on the command line."""
        known = _known_keys(parser, self.sections)
        values = {}
        flat = self.flat(load_mapping(path))
        unknown = sorted(k for k in flat if _key(k) not in known)
        if unknown:
            names = sorted({a.option_strings[-1].lstrip("-").replace("-", "_") for a, _ in known.values()})
            raise ConfigError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(names)}")
        for key, value in flat.items():
            action, invert = known[_key(key)]
            values[action.dest] = _convert(action, value, key, invert)
        return values


def _key(name: str) -> str:
    return str(name).strip().lstrip("-").replace("-", "_")


def _known_keys(parser, sections: Sequence[ConfigOptions]) -> dict[str, tuple[argparse.Action, bool]]:
    """key -> (action, whether the value is inverted): dests, long option names, config field names."""
    known: dict[str, tuple[argparse.Action, bool]] = {}
    for action in parser._actions:
        hidden = action.help is argparse.SUPPRESS or not action.option_strings
        if hidden or action.dest in ("config", "help", "version"):
            continue
        known.setdefault(action.dest, (action, False))  # a dest's first option (not a later alias such as --bf16)
        for option in action.option_strings:
            if option.startswith("--"):
                known[_key(option)] = (action, False)
    for options in sections:
        for f in options.fields():
            if options.dest(f.name) in known:
                known.setdefault(f.name, (known[options.dest(f.name)][0], f.name in options.negate))
    return known


def _convert(action: argparse.Action, value: Any, key: str, invert: bool) -> Any:
    """``value`` from the file, checked by ``action``'s type and choices (a ConfigError naming ``key`` if bad)."""
    if action.nargs == 0:  # store_true / store_false
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value != invert
    if value is None:
        if action.default is None:
            return None
        raise ConfigError(f"{key}: expected a value, got null")
    if isinstance(action, argparse._AppendAction):
        items = [f"{k}={v!r}" for k, v in value.items()] if isinstance(value, dict) else value
        items = [items] if isinstance(items, str) else items
        if not isinstance(items, list):
            raise ConfigError(f"{key}: expected a list or a mapping, got {value!r}")
        return [_convert_one(action, item, key) for item in items]
    return _convert_one(action, value, key)


def _convert_one(action: argparse.Action, value: Any, key: str) -> Any:
    if isinstance(value, dict | list):
        raise ConfigError(f"{key}: expected a single value, got {value!r}")
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, bool) else str(value)
    try:
        converted = action.type(text) if action.type else text
    except (argparse.ArgumentTypeError, ValueError, TypeError) as err:
        raise ConfigError(f"{key}: {err}") from None
    if action.choices is not None and converted not in action.choices:
        raise ConfigError(f"{key}: expected one of {', '.join(map(str, action.choices))}, got {value!r}")
    return converted


def add_config_option(p: Parser, spec: ConfigFile) -> None:
    """``--config FILE`` on the command ``p`` (a :class:`Parser`)."""
    p.add_argument(
        "--config", metavar="FILE",
        help="options from a YAML or JSON file (or a checkpoint's config.json, to repeat its run); "
        "flags on the command line override it",
    )  # fmt: skip
    p.config_file = spec


def recorded_options(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options worth recording with a run (a valid ``--config`` later): not ``out``, ``resume``, ..."""
    return {
        k: v for k, v in vars(args).items()
        if k not in NOT_RECORDED and not k.endswith("_command") and not callable(v)
    }  # fmt: skip


def command_words(args: argparse.Namespace) -> str:
    """``"classify train"`` for ``qkv classify train ...``."""
    actions = [v for k, v in vars(args).items() if k.endswith("_command") and isinstance(v, str)]
    return " ".join([args.command, *actions])


def run_record(args: argparse.Namespace) -> dict[str, Any]:
    """``{"command": ..., "options": ...}``: what a run records in its ``config.json`` to be repeated."""
    return {"command": command_words(args), "options": recorded_options(args)}
