"""The package's floors, checked on every import statement (function-level ones included).

A module may import from its own floor or below, never above (docs/architecture.md):

    core  <  data · layers · metrics  <  models · demo  <  inference  <  training  <  cli
"""

from __future__ import annotations

import ast
import pathlib
import sys

import videopool

FLOORS = {"core": 0, "data": 1, "layers": 1, "metrics": 1, "models": 2, "demo": 2, "inference": 3, "training": 4,
          "cli": 5}
PACKAGE = pathlib.Path(videopool.__file__).parent


def imported_modules(path: pathlib.Path) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path``, relative imports resolved."""
    package = ["videopool", *path.relative_to(PACKAGE).parent.parts]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found += [(node.lineno, module)] + [(node.lineno, f"{module}.{alias.name}") for alias in node.names
                                                if not node.module]
    return found


def floor_of(parts: tuple[str, ...]) -> int | None:
    return FLOORS.get(parts[0]) if parts else None


def upward_imports() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        own = floor_of(parts[:-1]) if len(parts) > 1 else None
        if own is None:
            continue  # videopool/__init__.py, __main__.py: the top, may import anything
        for line, module in imported_modules(path):
            names = module.split(".")
            if names[0] != "videopool":
                continue
            target = 0 if names == ["videopool"] else floor_of(tuple(names[1:2]))  # the root holds __version__
            if target is None:
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}, which has no floor")
            elif target > own:
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module} (floor {target} > {own})")
    return problems


def test_every_package_folder_has_a_floor() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(FLOORS), f"folders without a floor or floors without a folder: {folders ^ set(FLOORS)}"


def test_imports_never_climb_a_floor() -> None:
    assert upward_imports() == []


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch) -> None:
    # The same walk over a fake package with one climbing import must report it, relative imports included.
    fake = tmp_path / "videopool"
    for folder, text in {"data": "from ..training import loop\n", "models": "from videopool.layers import norm\n"}.items():
        (fake / folder).mkdir(parents=True)
        (fake / folder / "__init__.py").write_text("")
        (fake / folder / "x.py").write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert upward_imports() == ["videopool/data/x.py:1 imports videopool.training (floor 4 > 1)"]
