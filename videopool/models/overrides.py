"""Applying overrides to a model config dict.

An override key may be written three ways, all equivalent::

    {"pooling.cluster_size": 16}            # dotted path
    {"pooling": {"cluster_size": 16}}       # nested mapping (merged into the section)
    {"cluster_size": 16}                    # a leaf name that occurs once in the schema
    {"gating_type": "none"}                 # section_leaf, same as "gating.type"

Names that fit several fields (``type``, ``dropout``, ``activation``, ``add_batch_norm``, and
``hidden_size``, which could mean ``hidden.size`` or the recurrent ``pooling.hidden_size``) are
errors listing the candidates. Unknown keys are errors naming the closest valid key.
A mapping given for a *section* (``pooling``, ``hidden``, ...) is merged into it; a mapping given
for a mapping-valued *field* (``modalities``, ``pooling.options``, ...) replaces it, and a dotted
key reaches one entry inside it (``pooling.options.groups``).
"""

from __future__ import annotations

import copy
import typing
from dataclasses import fields, is_dataclass
from typing import Any, Mapping

from videopool.models.config import ConfigError, ModelConfig, closest_hint


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


def valid_override_keys() -> list[str]:
    """All dotted paths plus the unambiguous leaf shortcuts."""
    return sorted(set(_SCHEMA) | set(_shortcuts()))


def _shortcuts() -> dict[str, str]:
    by_name: dict[str, set[str]] = {}
    for path in _LEAVES:
        by_name.setdefault(path.rsplit(".", 1)[-1], set()).add(path)
        by_name.setdefault(path.replace(".", "_"), set()).add(path)
    return {name: next(iter(paths)) for name, paths in by_name.items() if len(paths) == 1 and name not in _SCHEMA}


def resolve_key(key: str) -> str:
    """The full dotted path an override key refers to."""
    if key in _SCHEMA:
        return key
    head = key
    while "." in head:  # a dotted key reaching into a mapping-valued field
        head = head.rsplit(".", 1)[0]
        if head in _DICT_FIELDS:
            return key
    matches = [path for path in _LEAVES if path.rsplit(".", 1)[-1] == key or path.replace(".", "_") == key]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"override key {key!r} is ambiguous; write one of {', '.join(matches)}")
    raise ConfigError(
        f"unknown override key {key!r}{closest_hint(key, valid_override_keys())} "
        f"(valid dotted keys: {', '.join(path for path in _SCHEMA if path not in _SECTIONS)})"
    )


def apply_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of the config dict ``config`` with ``overrides`` applied (see module docstring)."""
    result = copy.deepcopy(dict(config))
    for key, value in overrides.items():
        path = resolve_key(str(key))
        _set(result, path.split("."), value)
    return result


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
                raise ConfigError(f"unknown override key {full}.{sub_key}{closest_hint(str(sub_key), names)}")
            _set(target, parts + [str(sub_key)], sub_value)
        return
    node[leaf] = copy.deepcopy(value)
