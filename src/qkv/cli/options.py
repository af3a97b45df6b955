"""Command-line options derived from the config dataclasses, and the checked argument types every command shares.

A config dataclass (``TrainConfig``, ``ClassifyTrainConfig``, ``MLMConfig``, ...) is the one source of truth of its
options: :class:`ConfigOptions` adds one flag per field (type from the annotation, default from the field, help
from the ``Args:`` section of the class docstring) and builds the config back from the parsed namespace, so no
default is typed twice and nothing rewrites ``args`` after parsing. Values are checked where they are parsed
(:func:`positive_int`, :func:`finite_float`, :func:`device_name`, ...): a bad one is a one-line error, exit 2.

Example:
    >>> TRAIN = ConfigOptions(TrainConfig, rename={"max_epochs": "epochs"})     # doctest: +SKIP
    >>> TRAIN.add_to(parser.add_argument_group("training"))                     # doctest: +SKIP
    >>> config = TRAIN.build(parser.parse_args(argv))                           # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch


# -- argument types: each raises ArgumentTypeError with what it expected and what it got -----------------------
def _integer(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _number(text: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def integer(text: str) -> int:
    """Any integer (e.g. a seed)."""
    return _integer(text)


def _checked(value, ok: bool, expected: str, text: str):
    """``value`` if ``ok``, else the ArgumentTypeError ``expected …, got 'text'``."""
    if not ok:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (batch sizes, beam sizes, counts)."""
    value = _integer(text)
    return _checked(value, value >= 1, "an integer >= 1", text)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (warm-up steps)."""
    value = _integer(text)
    return _checked(value, value >= 0, "an integer >= 0", text)


def finite_float(text: str) -> float:
    """A finite number (no nan, no inf)."""
    return _number(text)


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, minutes)."""
    value = _number(text)
    return _checked(value, value > 0, "a number > 0", text)


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (weight decay, length penalty)."""
    value = _number(text)
    return _checked(value, value >= 0, "a number >= 0", text)


def fraction(text: str) -> float:
    """A number in [0, 1) (dropouts, label smoothing, Adam's betas)."""
    value = _number(text)
    return _checked(value, 0.0 <= value < 1.0, "a number in [0, 1)", text)


def device_name(text: str) -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, and available on this machine (the name is returned)."""
    name = str(text).strip()
    if name == "auto":
        return name
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda, cuda:N or mps, got {text!r}")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine")
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {count} CUDA device(s), 0 … {count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available on this machine")
    return name


def add_device_options(p, default: str = "auto") -> None:
    """``--device`` (checked against this machine) and ``--threads`` (CPU threads; applied by ``qkv.cli.main``)."""
    p.add_argument("--device", type=device_name, default=default, help="auto (CUDA if present) | cpu | cuda[:N] | mps")
    add_threads_option(p)


def add_threads_option(p) -> None:
    """``--threads N``: ``torch.set_num_threads(N)`` before the command runs (for commands that stay on the CPU)."""
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch (default: torch's choice)")


def add_search_options(p, beam: bool = True) -> None:
    """``--beam``, ``--alpha`` and ``--early-stopping``: the search of ``qkv translate`` and ``qkv evaluate``;
    ``qkv serve`` takes them without ``--beam`` (each request picks its beam size)."""
    if beam:
        p.add_argument("--beam", type=positive_int, default=5, help="beam size; 1 = greedy")
    p.add_argument("--alpha", type=finite_float, default=0.6, help="length penalty α")
    p.add_argument("--early-stopping", action="store_true",
                   help="beam search ends a sentence once it holds --beam finished hypotheses (Hugging Face's "
                   "early_stopping=True, CTranslate2's rule), not when no live beam can beat them: less work, "
                   "may miss a longer translation")  # fmt: skip


def add_hidden_alias(p, option: str, dest: str, **kwargs: Any) -> None:
    """An old spelling of an option that still works but is not shown in ``--help`` (e.g. ``--beam-size``)."""
    p.add_argument(option, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


# -- help texts from the ``Args:`` section of a docstring ------------------------------------------------------
_ENTRY = re.compile(r"^ {4}([A-Za-z_][\w, ]*):\s*(.*)$")


def field_docs(cls: type) -> dict[str, str]:
    """``{field: text}`` from every ``Args:`` section of ``cls``'s docstring (``a, b: text`` documents both)."""
    docs: dict[str, str] = {}
    names: list[str] = []
    in_args = False
    for line in inspect.cleandoc(cls.__doc__ or "").splitlines():
        if line.strip() == "Args:":
            in_args, names = True, []
            continue
        if not in_args:
            continue
        entry = _ENTRY.match(line)
        if entry:
            names = [n.strip() for n in entry.group(1).split(",")]
            for name in names:
                docs[name] = entry.group(2).strip()
        elif line.startswith("        ") and names:
            for name in names:
                docs[name] += " " + line.strip()
        elif line.strip():
            in_args = False  # the section ended
    return {k: v.replace("``", "").replace("%", "%%").rstrip(".") for k, v in docs.items()}


def _base_type(annotation: Any) -> Any:
    """``int | None`` -> ``int``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


DEFAULT_TYPES: dict[Any, Callable[[str], Any]] = {int: positive_int, float: finite_float, str: str}
METAVARS = {int: "N", float: "X"}


@dataclass(frozen=True)
class ConfigOptions:
    """The flags of one config dataclass: ``--field-name`` per field, and the config built back from them.

    Args:
        cls: the frozen config dataclass (with ``from_dict``, see :class:`qkv.config.ConfigMixin`).
        rename: field -> option name where the command spells it otherwise (``max_epochs`` -> ``epochs``:
            ``--epochs``, ``args.epochs``).
        negate: bool fields that default to true -> the name of the flag that turns them off
            (``progress`` -> ``no_progress``: ``--no-progress``).
        defaults: the command's own defaults where they differ from the dataclass (documented in ``--help``).
        types: field -> argument type (default: ints :func:`positive_int`, floats :func:`finite_float`).
        choices: field -> the allowed values.
        helps: field -> help text (default: the field's entry in the class docstring).
        skip: fields without a flag (they keep the dataclass default).
        only: if given, the only fields with a flag (e.g. the two model options a command exposes).
    """

    cls: type
    rename: Mapping[str, str] = field(default_factory=dict)
    negate: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    types: Mapping[str, Callable[[str], Any]] = field(default_factory=dict)
    choices: Mapping[str, tuple] = field(default_factory=dict)
    helps: Mapping[str, str] = field(default_factory=dict)
    skip: tuple[str, ...] = ()
    only: tuple[str, ...] = ()

    def fields(self) -> list[dataclasses.Field]:
        named = [f for f in dataclasses.fields(self.cls) if not self.only or f.name in self.only]
        return [f for f in named if f.name not in self.skip]

    def dest(self, name: str) -> str:
        """The ``args`` attribute of field ``name``."""
        return self.negate.get(name) or self.rename.get(name, name)

    def default(self, f: dataclasses.Field) -> Any:
        return self.defaults.get(f.name, f.default)

    def add_to(self, group) -> None:
        """Add one option per field to ``group`` (a parser or an argument group)."""
        hints = typing.get_type_hints(self.cls)
        docs = field_docs(self.cls)
        for f in self.fields():
            help_text = self.helps.get(f.name) or ("turn off: " if f.name in self.negate else "") + docs.get(f.name, "")
            flag = "--" + self.dest(f.name).replace("_", "-")
            kind = _base_type(hints[f.name])
            if kind is bool:
                if f.name in self.negate:
                    group.add_argument(flag, dest=self.dest(f.name), action="store_true", help=help_text)
                else:
                    group.add_argument(flag, dest=self.dest(f.name), action="store_true",
                                       default=bool(self.default(f)), help=help_text)
                continue
            group.add_argument(
                flag, dest=self.dest(f.name), type=self.types.get(f.name, DEFAULT_TYPES.get(kind, str)),
                choices=self.choices.get(f.name), default=self.default(f), help=help_text,
                metavar=None if f.name in self.choices else METAVARS.get(kind, self.dest(f.name).upper()),
            )  # fmt: skip

    def values(self, args: argparse.Namespace) -> dict[str, Any]:
        """``{field: value}`` read from the parsed ``args``."""
        out = {}
        for f in self.fields():
            value = getattr(args, self.dest(f.name))
            out[f.name] = not value if f.name in self.negate else value
        return out

    def to_options(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Config fields (e.g. the ``"train"`` section of a checkpoint's ``config.json``) -> ``{dest: value}``."""
        names = {f.name for f in self.fields()}
        return {self.dest(k): (not v if k in self.negate else v) for k, v in values.items() if k in names}

    def build(self, args: argparse.Namespace, **resolved: Any):
        """The config from ``args``, with ``resolved`` fields (defaults worked out by the command) on top."""
        return self.cls.from_dict({**self.values(args), **resolved}, where="the command line")
