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

from videopool.core.errors import UserError
from videopool.data.remote import open_any

VOCABULARY_COLUMNS = ("Index", "TrainVideoCount", "KnowledgeGraphId", "Name", "WikiUrl",
                      "Vertical1", "Vertical2", "Vertical3", "WikiDescription")

# A vocabulary's largest index sets the model's class count V; an index this large is a wrong column or a corrupt
# file, not a label space (YouTube-8M has 3,862 classes; a logistic head of 10^6 classes over 1,024 features is
# already 4 GB of weights).
MAX_CLASSES = 1_000_000


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
    """Read a vocabulary CSV with a header row holding at least ``Index`` and ``Name``.

    The file is UTF-8 text (a UTF-8 byte-order mark, as spreadsheet programs write, is skipped). Everything else is
    a :class:`~videopool.core.errors.UserError` naming the file (and the line): a missing or directory path
    (:class:`FileNotFoundError` for a missing one), a binary file or another encoding, a header without ``Index``
    or ``Name``, an index that is not a non-negative integer, appears twice, or is at least :data:`MAX_CLASSES`
    (a model with that many classes would not fit in memory).
    """
    path = os.fspath(path)
    names: dict[int, str] = {}
    rows: dict[int, dict[str, str]] = {}
    _check_text_file(path)
    try:
        with open_any(path, "r", newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            header = [column.strip() for column in reader.fieldnames or []]
            missing = {"Index", "Name"} - set(header)
            if missing:
                raise UserError(f"{path}: vocabulary header must contain 'Index' and 'Name'; missing "
                                f"{sorted(missing)} (header: {header[:12]})")
            reader.fieldnames = header
            for row in reader:
                index, name, values = _parse_row(path, reader.line_num, row)
                if index in names:
                    raise UserError(f"{path}, line {reader.line_num}: class index {index} appears twice")
                names[index], rows[index] = name, values
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: the vocabulary is not UTF-8 text (byte 0x{err.object[err.start]:02x} is not "
                        "UTF-8); save it as UTF-8 CSV") from None
    except csv.Error as err:
        raise UserError(f"{path}: not a readable CSV file ({err}); save the vocabulary as UTF-8 CSV") from None
    return Vocabulary(names, rows)


_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
         (b"\xfe\xff", "UTF-16"))


def _check_text_file(path: str) -> None:
    """A missing path, a directory, another encoding's byte-order mark or a binary file, each named."""
    if os.path.isdir(path):
        raise UserError(f"vocabulary {path!r} is a directory; give its vocabulary.csv")
    try:
        with open_any(path, "rb") as file:  # a local path or an fsspec URL
            head = file.read(4096)
    except FileNotFoundError:
        raise FileNotFoundError(f"vocabulary file {path!r} does not exist") from None
    except OSError as err:
        raise UserError(f"cannot read vocabulary {path!r}: {err.strerror or err}") from None
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            raise UserError(f"{path}: the vocabulary is {encoding} text (it starts with a {encoding} byte-order "
                            "mark); save it as UTF-8 CSV")
    if b"\x00" in head:
        raise UserError(f"{path}: the vocabulary is a binary file (it holds NUL bytes), not a CSV text file; "
                        "did you pass a TFRecord shard? Give the vocabulary.csv")


def _parse_row(path: str, line: int, row: dict) -> tuple[int, str, dict[str, str]]:
    text = row["Index"]
    try:
        index = int(text)
    except (TypeError, ValueError):
        raise UserError(f"{path}, line {line}: Index {text!r} is not an integer") from None
    if index < 0:
        raise UserError(f"{path}, line {line}: negative class index {index}")
    if index >= MAX_CLASSES:
        raise UserError(f"{path}, line {line}: class index {index} would make a model of {index + 1:,} classes; "
                        f"indices must be below {MAX_CLASSES:,} (is Index the class id column?)")
    return index, (row["Name"] or "").strip(), {key: value for key, value in row.items() if key is not None}


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
