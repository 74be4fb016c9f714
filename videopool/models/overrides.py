"""Applying overrides to a model config dict.

An override key is the dotted path of a field, or a nested mapping merged into a section::

    {"pooling.cluster_size": 16}            # dotted path
    {"pooling": {"cluster_size": 16}}       # nested mapping (merged into the section)
    {"pooling.options.groups": 8}           # a dotted key reaching one entry of a mapping-valued field

plus the few explicit aliases of :data:`ALIASES` (``cluster_size`` means ``pooling.cluster_size``). There
are no other shortcuts: ``size`` is an error that names ``hidden.size``, ``type`` one that lists every
``*.type``. A mapping given for a *section* (``pooling``, ``hidden``, ...) is merged into it; a mapping
given for a mapping-valued *field* (``modalities``, ``pooling.options``, ...) replaces it.

Modalities: a new ``modalities`` mapping (``--features x:12``, ``--set 'modalities={x: 12}'``) makes the
configuration fit those features: the per-modality settings (``pooling.cluster_size_divisor``,
``pooling.per_modality``) keep their entries for the modalities that remain and drop the others, so a new
modality gets the defaults. A dotted ``modalities.NAME`` changes the size of an existing modality only; naming a
new one is an error (it would silently be read *beside* the others).
"""

from __future__ import annotations

import copy
import typing
from dataclasses import fields, is_dataclass
from typing import Any, Iterable, Mapping

from videopool.core.schema import ConfigError, closest, suggestion
from videopool.models.config import ModelConfig

# The only short override names. Each is spelled out here, so a new field never changes what a key means.
ALIASES: dict[str, str] = {
    "cluster_size": "pooling.cluster_size",
    "cluster_size_divisor": "pooling.cluster_size_divisor",
    "num_mixtures": "classifier.num_mixtures",
}


def _schema(cls: type = ModelConfig, prefix: str = "") -> dict[str, str]:
    """Every settable dotted path -> ``"section"`` (a nested dataclass), ``"mapping"`` or ``"value"``."""
    hints = typing.get_type_hints(cls)
    paths: dict[str, str] = {}
    for f in fields(cls):
        path = prefix + f.name
        kind = hints[f.name]
        if is_dataclass(kind):
            paths[path] = "section"
            paths.update(_schema(kind, path + "."))
        else:
            paths[path] = "mapping" if typing.get_origin(kind) is dict else "value"
    return paths


_SCHEMA = _schema()
_SECTIONS = {path for path, kind in _SCHEMA.items() if kind == "section"}
_DICT_FIELDS = {path for path, kind in _SCHEMA.items() if kind == "mapping"}
_LEAVES = [path for path, kind in _SCHEMA.items() if kind != "section"]


def override_keys() -> list[str]:
    """Every dotted path (sections included) and alias an override may name."""
    return sorted(set(_SCHEMA) | set(ALIASES))


def resolve_key(key: str) -> str:
    """The dotted path an override key refers to; :class:`ConfigError` showing the path to use if none."""
    if key in _SCHEMA:
        return key
    if key in ALIASES:
        return ALIASES[key]
    head = key
    while "." in head:  # a dotted key reaching into a mapping-valued field
        head = head.rsplit(".", 1)[0]
        if head in _DICT_FIELDS:
            return key
    raise ConfigError(
        f"unknown model key {key!r}{key_hint(key)} (model keys are dotted paths such as pooling.cluster_size, "
        f"see docs/models.md; aliases: {', '.join(ALIASES)})"
    )


def key_hint(key: str, extra: Iterable[str] = ()) -> str:
    """``"; did you mean 'hidden.size'?"`` for an unknown key: the dotted path(s) whose leaf name or
    ``section_leaf`` spelling is ``key``, else the closest dotted path, alias or one of ``extra``."""
    spellings: dict[str, list[str]] = {}
    for path in _LEAVES:
        for spelling in (path.rsplit(".", 1)[-1], path.replace(".", "_")):
            if path not in spellings.setdefault(spelling, []):
                spellings[spelling].append(path)
    exact = [path for path in spellings.get(key, []) if path != key]
    if exact:
        return suggestion(exact)
    match = closest(key, sorted(set(_SCHEMA) | set(ALIASES) | set(extra)))
    if match is not None:
        return suggestion([ALIASES.get(match, match)])
    match = closest(key, sorted(spellings))  # a misspelled leaf name: point at its dotted path
    return suggestion(spellings[match]) if match is not None else ""


def apply_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of the config dict ``config`` with ``overrides`` applied (see module docstring)."""
    result = copy.deepcopy(dict(config))
    paths = [resolve_key(str(key)) for key in overrides]
    for path, value in zip(paths, overrides.values()):
        if path.startswith("modalities."):
            _check_existing_modality(result, path, value)
        _set(result, path.split("."), value)
        if path == "modalities" and isinstance(value, Mapping):
            _fit_keyed_settings(result, set(value), explicit=paths)
    return result


# Settings keyed by modality name, which must follow a change of the modalities.
KEYED_BY_MODALITY = ("pooling.cluster_size_divisor", "pooling.per_modality")


def _fit_keyed_settings(result: dict[str, Any], modalities: set[str], explicit: list[str]) -> None:
    """Keep the per-modality entries of the remaining modalities; those the overrides set themselves stay."""
    for path in KEYED_BY_MODALITY:
        if any(p == path or p.startswith(path + ".") for p in explicit):
            continue
        section, leaf = path.split(".")
        mapping = (result.get(section) or {}).get(leaf)
        if isinstance(mapping, dict):
            result[section][leaf] = {name: v for name, v in mapping.items() if name in modalities}


def _check_existing_modality(result: dict[str, Any], path: str, value: Any) -> None:
    name = path[len("modalities."):]
    current = result.get("modalities") or {}
    if name not in current:
        sizes = ",".join(f"{m}:{size}" for m, size in current.items())
        raise ConfigError(
            f"modalities.{name}={value!r} would add feature {name!r} beside {', '.join(map(repr, current))}; "
            f"a dotted modalities key only changes an existing size. To read only {name!r}: --features "
            f"{name}:{value} (or --set 'modalities={{{name}: {value}}}'); to read it as well: --features "
            f"{sizes},{name}:{value}")


def _set(target: dict[str, Any], parts: list[str], value: Any) -> None:
    node = target
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {'.'.join(parts)}: {part!r} is not a mapping")
        node = child
    leaf = parts[-1]
    full = ".".join(parts)
    if full in _SECTIONS and isinstance(value, Mapping) and isinstance(node.get(leaf), dict):
        for sub_key, sub_value in value.items():
            if f"{full}.{sub_key}" not in _SCHEMA:
                names = [p[len(full) + 1 :] for p in _SCHEMA if p.startswith(full + ".")]
                match = closest(str(sub_key), names)
                hint = suggestion([f"{full}.{match}"]) if match is not None else ""
                raise ConfigError(f"unknown model key '{full}.{sub_key}'{hint} (valid in {full}: {', '.join(names)})")
            _set(target, parts + [str(sub_key)], sub_value)
        return
    node[leaf] = copy.deepcopy(value)
