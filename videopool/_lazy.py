"""Lazy attribute export for package ``__init__`` files.

Each package lists ``public name -> submodule``; a submodule is imported the
first time one of its names is used. This keeps ``import videopool.data``
cheap and lets independent submodules fail (or be absent) independently.
"""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, table: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    def __getattr__(name: str) -> object:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(f"{package}.{table[name]}")
        return getattr(module, name)

    def __dir__() -> list[str]:
        return sorted(table)

    return __getattr__, __dir__
