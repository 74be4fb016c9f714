"""Strict parsing of plain dicts (from YAML, checkpoints or ``--set``) into configuration dataclasses.

The one parser of every configuration videopool has (model, training): unknown keys, wrong types and values
outside a field's choices are errors naming the key, the value and what is allowed."""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import fields, is_dataclass
from typing import Any, Mapping

from videopool.core.errors import UserError


class ConfigError(UserError):
    """A configuration is malformed: unknown key, wrong type, or an invalid value."""


def closest(word: str, choices: typing.Iterable[str]) -> str | None:
    """The closest of ``choices`` to ``word`` (difflib, cutoff 0.5), or None."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.5)
    return close[0] if close else None


def suggestion(candidates: typing.Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` (or ``"... one of 'x', 'y'?"``) for ``candidates``; empty if there are none."""
    if not candidates:
        return ""
    if len(candidates) == 1:
        return f"; did you mean {candidates[0]!r}?"
    return f"; did you mean one of {', '.join(repr(c) for c in candidates)}?"


def closest_hint(word: str, choices: typing.Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or an empty string."""
    match = closest(word, choices)
    return suggestion([match] if match is not None else [])


def check_choice(path: str, value: object, choices: typing.Iterable[str]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices`` (the message lists them)."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{path} = {value!r} is not one of {list(choices)}{closest_hint(str(value), choices)}")


def parse_dataclass(cls: type, data: Any, source: str, path: str = "") -> Any:
    """Instantiate dataclass ``cls`` from a mapping, recursing into nested dataclass fields.

    Raises :class:`ConfigError` naming ``source`` and the dotted key for unknown keys (with the closest
    valid one), wrong types, and invalid values.
    """
    where = f"{source}: {path}" if path else source
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise ConfigError(f"{source}: unknown key {dotted!r}{closest_hint(key, names)} (valid: {', '.join(names)})")
        kind = hints[key]
        if is_dataclass(kind):
            kwargs[key] = parse_dataclass(kind, value, source, dotted)
        else:
            kwargs[key] = _coerce(value, kind, f"{source}: {dotted}")
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """Check ``value`` against a field annotation, converting the few lossless cases YAML needs."""
    origin = typing.get_origin(kind)
    if kind is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where} may not be null")
    if origin is tuple:
        args = typing.get_args(kind)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        items = list(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(item, args[0], f"{where}[{i}]") for i, item in enumerate(items))
        if len(items) != len(args):
            raise ConfigError(f"{where} must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(item, arg, f"{where}[{i}]") for i, (item, arg) in enumerate(zip(items, args)))
    if origin is list:
        (item_kind,) = typing.get_args(kind)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [_coerce(item, item_kind, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        key_kind, value_kind = typing.get_args(kind)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return {_coerce(k, key_kind, where): _coerce(v, value_kind, f"{where}.{k}") for k, v in value.items()}
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-6 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where} must be a string, got {value!r}")
    raise TypeError(f"unsupported config annotation {kind!r} at {where}")
