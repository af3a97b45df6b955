"""Model configuration: frozen, typed, validated on construction; unknown options fail loudly."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Self


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


def config_from_dict(cls: type, data: dict[str, Any], where: str = "config"):
    """Build a config dataclass from a dict, refusing keys the dataclass does not have."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} option(s) in {where}: {unknown}; known: {sorted(names)}")
    return cls(**data)


class ConfigMixin:
    """``from_dict`` / ``to_dict`` / ``replace`` for the frozen config dataclasses (unknown keys refused)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> Self:
        return config_from_dict(cls, data, where=where)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def replace(self, **changes: Any) -> Self:
        return config_from_dict(type(self), {**self.to_dict(), **changes})


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python, not to us


def is_number(value: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition``."""
    if not condition:
        raise ConfigError(message)


def check_positive_ints(config: Any, names: Iterable[str]) -> None:
    """Raise :class:`ConfigError` unless every field ``names`` of ``config`` is a positive int (not a bool)."""
    for name in names:
        value = getattr(config, name)
        check(is_int(value) and value > 0, f"{name} must be a positive int, got {value!r}")


def check_fractions(config: Any, names: Iterable[str]) -> None:
    """Raise :class:`ConfigError` unless every field ``names`` of ``config`` (dropouts) is a number in [0, 1)."""
    for name in names:
        value = getattr(config, name)
        check(is_number(value) and 0.0 <= value < 1.0, f"{name} must be a number in [0, 1), got {value!r}")


def config_preset(cls: type, presets: Mapping[str, dict[str, Any]], name: str, overrides: dict[str, Any], what: str):
    """``cls`` built from the preset ``presets[name]`` updated with ``overrides`` (unknown keys refused)."""
    if name not in presets:
        raise ConfigError(f"unknown {what} preset {name!r}; presets: {sorted(presets)}")
    return config_from_dict(cls, {**presets[name], **overrides}, where=f"preset {name!r}")
