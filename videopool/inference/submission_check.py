"""Validation of a 2019 segment submission (``Class,Segments`` CSV, spec §8.6 and §9) before it is uploaded.

What it reports, one problem per line with its line number:

* structure: the header (``Class,Segments``, nothing else), two fields per row (the ids are separated by
  spaces, never commas), no data row, blank lines (warning);
* class ids: a non-negative integer, in the whitelist when one is given, each class on one row only; whitelisted
  classes without a row (warning: the official script averages over the classes present, Kaggle scores them 0);
* entries: ``videoId:startFrame`` with the start frame a multiple of 5 (the only starts that are rated), no id
  twice in a class (the official script would count a duplicated positive twice), at most ``top_n`` per class
  (fewer: a warning, the class forgoes AP it could have had);
* what a spreadsheet program does to a CSV it saved: a UTF-8 byte-order mark, Windows line endings (CRLF),
  quoted cells, a semicolon or tab as the delimiter (locales with a decimal comma), numbers in scientific notation
  (``1.00E+33`` for the video id ``1e33``, ``1.00E+03`` for a class), doubled spaces, and cells cut at Excel's
  limit of 32,767 characters (a full row of 100,000 ids is ~1 M characters: such a file must never be opened in a
  spreadsheet).

A valid row is checked by one regular expression over the whole cell and a set of its ids, not entry by entry,
so a full-size submission (1,000 x 100,000 ids) is checked in seconds; only a row that fails is taken apart.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

HEADER = "Class,Segments"
EXCEL_CELL_LIMIT = 32_767
SEGMENT_STEP = 5
_ID = r"[A-Za-z0-9_\-]+"
_VALID_CELL = re.compile(rf"(?:{_ID}:\d*[05](?: {_ID}:\d*[05])*)?")
_ENTRY = re.compile(rf"(?P<video>[^\s:]+):(?P<start>\d+)")
_SCIENTIFIC = re.compile(r"[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+")
_EXCEL_SCIENTIFIC = re.compile(r"\d(?:[.,]\d+)?E[+-]\d+")  # how a spreadsheet writes a number it parsed
_DECIMAL = re.compile(r"[+-]?\d+[.,]\d*")


@dataclass
class Problem:
    line: int  # 1-based; 0 for the file as a whole
    severity: str  # "error" or "warning"
    kind: str  # groups problems of one sort, to cap how many are printed
    message: str


@dataclass
class SubmissionReport:
    path: str
    problems: list[Problem] = field(default_factory=list)
    num_classes: int = 0
    num_entries: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def valid(self) -> bool:
        return not self.errors

    def lines(self, per_kind: int = 10) -> list[str]:
        """The report as text lines: at most ``per_kind`` problems of each kind, then a count of the rest."""
        shown: Counter = Counter()
        totals = Counter(p.kind for p in self.problems)
        out = []
        for p in self.problems:
            shown[p.kind] += 1
            if shown[p.kind] <= per_kind:
                where = f"{self.path}:{p.line}" if p.line else self.path
                out.append(f"{where}: {p.severity}: {p.message}")
            elif shown[p.kind] == totals[p.kind]:
                out.append(f"{self.path}: ... and {totals[p.kind] - per_kind} more line(s) like the above ({p.kind})")
        return out


def check_submission(path: str | os.PathLike, class_ids: Iterable[int] | None = None,
                     top_n: int = 100_000) -> SubmissionReport:
    """Check the submission at ``path`` (see the module docstring); ``class_ids`` is the whitelist, if any."""
    report = SubmissionReport(os.fspath(path))
    allowed = set(int(c) for c in class_ids) if class_ids is not None else None
    seen: dict[int, int] = {}  # class -> line of its row
    crlf_lines: list[int] = []

    def problem(line: int, kind: str, message: str, severity: str = "error") -> None:
        report.problems.append(Problem(line, severity, kind, message))

    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                problem(1, "bom", "the file starts with a UTF-8 byte-order mark (a spreadsheet's 'CSV UTF-8' "
                                  "export); save it without one")
                raw = raw[3:]
            if raw.endswith(b"\r\n") or raw.endswith(b"\r"):
                crlf_lines.append(number)
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                problem(number, "encoding", f"not UTF-8 text (byte {err.start} of the line)")
                continue
            if "\r" in text:
                problem(number, "line-ending", "a carriage return (\\r) inside the line: old Mac line endings?")
                text = text.replace("\r", "")
            if number == 1:
                _check_header(text, problem)
                if _looks_like_header(text):
                    continue  # well-formed or not (reported above), it holds no class
            _check_row(number, text, allowed, top_n, seen, report, problem)
    if crlf_lines:
        problem(crlf_lines[0], "line-ending", f"Windows line ending (CRLF) on {len(crlf_lines)} line(s), first "
                                              "here; write plain \\n line endings")
    if report.num_classes == 0 and not any(p.kind in ("encoding", "delimiter") for p in report.problems):
        problem(0, "empty", "no class row in the file")
    if allowed is not None and report.num_classes:
        missing = sorted(allowed - set(seen))
        if missing:
            problem(0, "missing-classes", f"{len(missing)} whitelisted class(es) have no row (first: "
                                          f"{', '.join(map(str, missing[:5]))}): they score nothing", "warning")
    return report


def _looks_like_header(text: str) -> bool:
    return text.strip().lstrip('"').lower().startswith("class")


def _check_header(text: str, problem) -> None:
    if text == HEADER:
        return
    if _looks_like_header(text):
        if '"' in text:
            problem(1, "quoted", f"header {text!r} has quoted cells; expected {HEADER!r}")
        elif ";" in text or "\t" in text:
            problem(1, "delimiter", f"header {text!r} uses {'a semicolon' if ';' in text else 'a tab'} as the "
                                    f"delimiter (a spreadsheet in a locale with decimal commas); expected {HEADER!r}")
        else:
            problem(1, "header", f"header {text!r}; expected exactly {HEADER!r}")
    else:
        problem(1, "header", f"no header line: expected {HEADER!r} as line 1, found {text[:40]!r}")


def _check_row(number: int, text: str, allowed, top_n: int, seen: dict, report: SubmissionReport, problem) -> None:
    if not text.strip():
        problem(number, "blank", "blank line", "warning")
        return
    if '"' in text:
        problem(number, "quoted", "quoted cell (a spreadsheet adds quotes on export); the official evaluator "
                                  "splits on the comma and would read the quotes as part of the ids")
        text = text.replace('"', "")
    if "," not in text:
        sign = ";" if ";" in text else "\t" if "\t" in text else None
        if sign:
            problem(number, "delimiter", f"{'semicolon' if sign == ';' else 'tab'} instead of a comma between the "
                                         "class and its segments (a spreadsheet's locale setting)")
            text = text.replace(sign, ",", 1)
        else:
            problem(number, "fields", "no comma: expected 'classId,videoId:start videoId:start ...'")
            return
    class_field, cells = text.split(",", 1)
    if "," in cells:
        problem(number, "fields", f"{text.count(',') + 1} fields; expected 2 (segment ids are separated by "
                                  "spaces, never commas)")
        cells = cells.replace(",", " ")
    if len(cells) == EXCEL_CELL_LIMIT:
        problem(number, "excel-truncated", f"the segment cell is exactly {EXCEL_CELL_LIMIT:,} characters, Excel's "
                                           "cell limit: the row was cut by a spreadsheet (its last id may be partial)")
    class_id = _class_id(number, class_field.strip(), problem)
    if class_id is not None:
        if allowed is not None and class_id not in allowed:
            problem(number, "class-whitelist", f"class {class_id} is not in the whitelist")
        if class_id in seen:
            problem(number, "class-duplicate", f"class {class_id} has a second row (first on line {seen[class_id]})")
        else:
            seen[class_id] = number
            report.num_classes += 1
    ids = cells.split(" ")
    if "" in ids or "\t" in cells:
        problem(number, "spacing", "doubled, leading or trailing spaces (or tabs) between the ids", "warning")
        ids = cells.split()
    report.num_entries += len(ids)
    if not _VALID_CELL.fullmatch(" ".join(ids)):
        _check_entries(number, ids, problem)
    if len(set(ids)) != len(ids):
        twice = [i for i, n in Counter(ids).items() if n > 1]
        problem(number, "duplicate", f"{len(twice)} segment id(s) listed more than once in this class "
                                     f"(first: {twice[0]}); each may appear once")
    label = f"class {class_id}" if class_id is not None else "this class"
    if len(ids) > top_n:
        problem(number, "count", f"{label} lists {len(ids):,} segments, more than the {top_n:,} allowed")
    elif len(ids) < top_n:
        problem(number, "short", f"{label} lists {len(ids):,} segments, fewer than {top_n:,}", "warning")


def _class_id(number: int, field: str, problem) -> int | None:
    if field.isdigit():
        return int(field)
    if _SCIENTIFIC.fullmatch(field):
        problem(number, "scientific", f"class id {field!r} is in scientific notation (a spreadsheet reformatted "
                                      "it); write the integer")
    elif _DECIMAL.fullmatch(field):
        problem(number, "class-syntax", f"class id {field!r} has decimals (a spreadsheet reformatted it); write "
                                        "the integer")
    else:
        problem(number, "class-syntax", f"class id {field!r} is not a non-negative integer")
    return None


def _check_entries(number: int, ids: list[str], problem) -> None:
    """Name the first bad entry of each sort on the line (the whole cell failed the fast check)."""
    found: dict[str, tuple[str, int]] = {}
    for token in ids:
        match = _ENTRY.fullmatch(token)
        if match is None:
            kind = "scientific" if _EXCEL_SCIENTIFIC.fullmatch(token.split(":")[0]) else "entry-syntax"
        elif _EXCEL_SCIENTIFIC.fullmatch(match["video"]):
            kind = "scientific"
        elif not re.fullmatch(_ID, match["video"]):
            kind = "entry-syntax"
        elif int(match["start"]) % SEGMENT_STEP:
            kind = "start"
        else:
            continue
        first, count = found.get(kind, (token, 0))
        found[kind] = (first, count + 1)
    messages = {
        "entry-syntax": "is not 'videoId:startFrame' (video ids are letters, digits, '-' and '_')",
        "scientific": "has a video id in scientific notation: a spreadsheet turned an id like '1e33' into a number",
        "start": f"starts at a frame that is not a multiple of {SEGMENT_STEP}: no rated segment starts there",
    }
    for kind, (first, count) in found.items():
        more = f" ({count} entries on this line)" if count > 1 else ""
        problem(number, kind, f"entry {first[:60]!r} {messages[kind]}{more}")
