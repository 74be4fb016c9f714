"""Class names: YouTube-8M ``vocabulary.csv`` reading and writing.

The published file has the columns ``Index, TrainVideoCount, KnowledgeGraphId, Name, WikiUrl,
Vertical1, Vertical2, Vertical3, WikiDescription`` (3,862 rows for the 2018+ data). Only
``Index`` and ``Name`` are required here, so segment vocabularies and hand-made files read too.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from typing import Iterable, Mapping

VOCABULARY_COLUMNS = ("Index", "TrainVideoCount", "KnowledgeGraphId", "Name", "WikiUrl",
                      "Vertical1", "Vertical2", "Vertical3", "WikiDescription")


@dataclass
class Vocabulary:
    """Class id -> name, plus the other columns of each row.

    ``num_classes`` is ``max(id) + 1`` (ids need not be contiguous, e.g. the 1,000 rated
    segment classes); ``len()`` is the number of rows.
    """

    names: dict[int, str]
    rows: dict[int, dict[str, str]] = field(default_factory=dict)

    def name(self, index: int) -> str:
        """The class name, or ``"class <index>"`` for an id the file does not list."""
        return self.names.get(int(index), f"class {int(index)}")

    @property
    def num_classes(self) -> int:
        return max(self.names) + 1 if self.names else 0

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, index: object) -> bool:
        return index in self.names

    def ids(self) -> list[int]:
        return sorted(self.names)


def read_vocabulary(path: str | os.PathLike) -> Vocabulary:
    """Read a vocabulary CSV with a header row holding at least ``Index`` and ``Name``."""
    path = os.fspath(path)
    names: dict[int, str] = {}
    rows: dict[int, dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        header = [column.strip() for column in reader.fieldnames or []]
        missing = {"Index", "Name"} - set(header)
        if missing:
            raise ValueError(f"{path}: vocabulary header must contain 'Index' and 'Name'; missing "
                             f"{sorted(missing)} (header: {header})")
        reader.fieldnames = header
        for line, row in enumerate(reader, start=2):
            try:
                index = int(row["Index"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}, line {line}: Index {row['Index']!r} is not an integer") from None
            if index < 0:
                raise ValueError(f"{path}, line {line}: negative class index {index}")
            if index in names:
                raise ValueError(f"{path}, line {line}: class index {index} appears twice")
            names[index] = (row["Name"] or "").strip()
            rows[index] = {key: value for key, value in row.items() if key is not None}
    return Vocabulary(names, rows)


def write_vocabulary(path: str | os.PathLike, rows: Iterable[Mapping[str, object]] | Mapping[int, str]) -> int:
    """Write a vocabulary CSV with the YouTube-8M columns; returns the number of rows.

    ``rows`` is either ``{index: name}`` or dicts with at least ``Index`` and ``Name``
    (missing YT8M columns are written empty; extra keys become extra columns).
    """
    if isinstance(rows, Mapping):
        rows = [{"Index": index, "Name": name} for index, name in sorted(rows.items())]
    rows = [dict(row) for row in rows]
    extra = sorted({key for row in rows for key in row} - set(VOCABULARY_COLUMNS))
    columns = list(VOCABULARY_COLUMNS) + extra
    for number, row in enumerate(rows):
        if "Index" not in row or "Name" not in row:
            raise ValueError(f"vocabulary row {number} needs 'Index' and 'Name': {row}")
    with open(os.fspath(path), "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)
