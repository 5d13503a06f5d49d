"""Generic machinery of the typed config: plain dicts <-> frozen dataclasses, dotted overrides.

Nothing here knows the sections of ``ExperimentConfig``: it builds any tree of dataclasses from a
plain dict, checking every value against the field's type (bool, int, float, str, StrEnum,
fixed-length and variable-length tuples, ``dict[str, X]``, ``X | None``) and naming the dotted
key when a value is wrong. Each section checks its own ranges in ``__post_init__`` (see
:mod:`.data`, :mod:`.training`, :mod:`.inference`).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import types
import typing
from typing import Any

import yaml


class UserError(ValueError):
    """A mistake in what a person gave (config, arguments, an input file), not a bug.

    Commands print its message as one line and exit with status 2; the HTTP endpoint answers 4xx.
    """


class ConfigError(UserError):
    """A configuration key or value is wrong; the message names the dotted key."""


def parse_choice(choices: type[enum.StrEnum], value: Any, name: str) -> Any:
    """``choices(value)``, or a ``ValueError`` naming ``name`` and listing the valid values."""
    try:
        return choices(value)
    except ValueError:
        valid = ", ".join(repr(member.value) for member in choices)
        raise ValueError(f"{name}={value!r} is not valid; choose one of: {valid}") from None


def parse_overrides(overrides: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """``["loss.lambda_l1=5"]`` -> ``{"loss.lambda_l1": 5}``; values are parsed as YAML."""
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like section.key=value")
        parsed[key.strip()] = yaml.safe_load(raw)
    return parsed


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"section.key": value}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def stable_hash(obj: Any) -> str:
    """Short sha256 of a JSON-able object in canonical form (used for data and config hashes)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def to_plain(value: Any) -> Any:
    """Dataclass trees, tuples and enums -> dicts, lists and plain strings (YAML/JSON-safe)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``tree["a"]["b"] = value`` for ``key="a.b"``; unknown keys raise ``ConfigError``."""
    parts = key.split(".")
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(f"unknown config key {key!r}: {where!r} is not a section")
        node = child
    if parts[-1] not in node:
        sections = ".".join(parts[:-1]) or "the top level"
        raise ConfigError(f"unknown config key {key!r}; {sections} has: {', '.join(sorted(node))}")
    node[parts[-1]] = value


def build(cls: type, data: Any, prefix: str = "") -> Any:
    """An instance of dataclass ``cls`` from a plain dict, every value checked against its type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r}; {where} has: {', '.join(sorted(names))}"
        )
    kwargs = {name: coerce(hints[name], value, prefix + name) for name, value in data.items()}
    return cls(**kwargs)


def coerce(tp: Any, value: Any, key: str) -> Any:
    """``value`` checked (and converted where lossless) to type ``tp``; errors name ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(inner[0], value, key)
    if isinstance(tp, type) and issubclass(tp, enum.StrEnum):
        try:
            return parse_choice(tp, value, key)
        except ValueError as exc:
            choices = str(exc).split("; ")[1]
            raise ConfigError(f"{key} = {value!r} is not allowed; {choices}") from None
    if origin is tuple:
        return _coerce_tuple(args, value, key)
    if origin is dict:
        return _coerce_dict(args, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def _coerce_tuple(args: tuple[Any, ...], value: Any, key: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key} must be a list, got {value!r}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(f"{key} must have {len(args)} items, got {list(value)!r}")
    pairs = enumerate(zip(args, value, strict=True))
    return tuple(coerce(a, v, f"{key}[{i}]") for i, (a, v) in pairs)


def _coerce_dict(args: tuple[Any, ...], value: Any, key: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping, got {value!r}")
    key_type, value_type = args
    return {
        coerce(key_type, name, f"{key} key {name!r}"): coerce(value_type, item, f"{key}.{name}")
        for name, item in value.items()
    }


class Section:
    """Mixin for a config section: range checks that raise ``ConfigError`` with the dotted key.

    A section sets ``SECTION`` (its key in ``ExperimentConfig``) and calls the checks from its
    ``__post_init__``; every message names ``section.key``, the value and what is allowed.
    """

    SECTION: typing.ClassVar[str] = ""

    def require(self, key: str, ok: bool, allowed: str) -> None:
        if not ok:
            value = getattr(self, key.split("[")[0], None)
            raise ConfigError(
                f"{self.SECTION}.{key} = {to_plain(value)!r} is not allowed: {allowed}"
            )

    def positive(self, *keys: str) -> None:
        for key in keys:
            self.require(key, getattr(self, key) > 0, "must be > 0")

    def non_negative(self, *keys: str) -> None:
        for key in keys:
            self.require(key, getattr(self, key) >= 0, "must be >= 0")

    def at_least(self, low: float, *keys: str) -> None:
        for key in keys:
            self.require(key, getattr(self, key) >= low, f"must be >= {low:g}")

    def probability(self, *keys: str) -> None:
        for key in keys:
            self.require(key, 0 <= getattr(self, key) <= 1, "must be a probability in [0, 1]")

    def optional_at_least(self, low: float, *keys: str) -> None:
        for key in keys:
            value = getattr(self, key)
            self.require(key, value is None or value >= low, f"must be null or >= {low:g}")
