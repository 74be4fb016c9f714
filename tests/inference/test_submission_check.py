"""videopool.inference.submission_check: a correct submission passes; each malformed variant (one per test) is
reported on its line with the right kind and severity; the command exits 0 / 1 / 2."""

from __future__ import annotations

import pytest

from videopool.cli.main import main
from videopool.inference.submission_check import EXCEL_CELL_LIMIT, check_submission

GOOD = "Class,Segments\n3,vidA:35 vidB:0 1e33:5\n7,vidB:120 vidA:0 vidC:5\n"
WHITELIST = [3, 7]


def check(tmp_path, content: bytes | str, top_n: int = 3, classes=WHITELIST):
    path = tmp_path / "submission.csv"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return check_submission(path, classes, top_n=top_n)


def test_a_correct_submission_has_no_problem(tmp_path):
    report = check(tmp_path, GOOD)
    assert report.valid and report.problems == []
    assert (report.num_classes, report.num_entries) == (2, 6)


def test_a_missing_final_newline_is_fine(tmp_path):
    assert check(tmp_path, GOOD.rstrip("\n")).problems == []


# (name, content, kind, line, severity): each a correct file with one thing broken
VARIANTS = [
    ("bom", "\ufeff" + GOOD, "bom", 1, "error"),
    ("crlf", GOOD.replace("\n", "\r\n"), "line-ending", 1, "error"),
    ("quoted-cells", 'Class,Segments\n"3","vidA:35 vidB:0 1e33:5"\n7,vidB:120 vidA:0 vidC:5\n', "quoted", 2, "error"),
    ("quoted-header", '"Class","Segments"\n3,vidA:35 vidB:0 1e33:5\n7,vidB:120 vidA:0 vidC:5\n', "quoted", 1, "error"),
    ("semicolon", GOOD.replace(",", ";"), "delimiter", 2, "error"),
    ("tab", "Class,Segments\n3\tvidA:35 vidB:0 1e33:5\n7,vidB:120 vidA:0 vidC:5\n", "delimiter", 2, "error"),
    ("no-header", GOOD.split("\n", 1)[1], "header", 1, "error"),
    ("wrong-header", "Class,Segment\n" + GOOD.split("\n", 1)[1], "header", 1, "error"),
    ("commas-between-ids", "Class,Segments\n3,vidA:35,vidB:0,1e33:5\n7,vidB:120 vidA:0 vidC:5\n", "fields", 2,
     "error"),
    ("class-not-integer", GOOD.replace("\n7,", "\nseven,"), "class-syntax", 3, "error"),
    ("class-decimal", GOOD.replace("\n7,", "\n7.0,"), "class-syntax", 3, "error"),
    ("class-scientific", GOOD.replace("\n3,", "\n3.00E+00,"), "scientific", 2, "error"),
    ("video-id-scientific", GOOD.replace("1e33:5", "1.00E+33:5"), "scientific", 2, "error"),
    ("class-outside-whitelist", GOOD.replace("\n7,", "\n8,"), "class-whitelist", 3, "error"),
    ("class-twice", GOOD.replace("\n7,", "\n3,"), "class-duplicate", 3, "error"),
    ("segment-twice", GOOD.replace("vidC:5", "vidB:120"), "duplicate", 3, "error"),
    ("start-not-multiple-of-5", GOOD.replace("vidA:35", "vidA:36"), "start", 2, "error"),
    ("entry-without-colon", GOOD.replace("vidA:35", "vidA35"), "entry-syntax", 2, "error"),
    ("entry-negative-start", GOOD.replace("vidA:35", "vidA:-5"), "entry-syntax", 2, "error"),
    ("too-many", GOOD.replace("vidC:5", "vidC:5 vidC:10"), "count", 3, "error"),
    ("not-utf8", GOOD.encode().replace(b"vidA:35", b"vid\xe9:35"), "encoding", 2, "error"),
    ("empty", "Class,Segments\n", "empty", 0, "error"),
    ("short", GOOD.replace(" vidC:5", ""), "short", 3, "warning"),
    ("missing-class", "Class,Segments\n3,vidA:35 vidB:0 1e33:5\n", "missing-classes", 0, "warning"),
    ("blank-line", GOOD + "\n", "blank", 4, "warning"),
    ("double-space", GOOD.replace("vidA:35 vidB:0", "vidA:35  vidB:0"), "spacing", 2, "warning"),
]


@pytest.mark.parametrize("content, kind, line, severity", [v[1:] for v in VARIANTS], ids=[v[0] for v in VARIANTS])
def test_each_malformed_variant_is_reported(tmp_path, content, kind, line, severity):
    report = check(tmp_path, content)
    assert any((p.kind, p.line, p.severity) == (kind, line, severity) for p in report.problems), report.problems
    assert report.valid == (severity == "warning")


def test_a_cell_cut_at_excels_limit_is_reported(tmp_path):
    ids = " ".join(f"v{i:06d}:{5 * (i % 60)}" for i in range(4000))
    cut = ids[:EXCEL_CELL_LIMIT]  # what Excel keeps of a longer cell
    report = check(tmp_path, f"Class,Segments\n3,{cut}\n7,vidB:120\n", top_n=100_000)
    kinds = {p.kind for p in report.problems if p.line == 2}
    assert "excel-truncated" in kinds and not report.valid


def test_the_report_caps_each_kind_and_counts_the_rest(tmp_path):
    rows = "".join(f"{c},vidA:0\n" for c in range(30))
    report = check(tmp_path, "Class,Segments\n" + rows, classes=None)
    lines = report.lines(per_kind=4)
    assert len([line for line in lines if "fewer than 3" in line]) == 4
    assert lines[-1].endswith("... and 26 more line(s) like the above (short)")


def test_the_command_exits_0_valid_1_invalid_2_missing(tmp_path, capsys):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text(GOOD)
    bad.write_text(GOOD.replace("vidA:35", "vidA:36"))
    assert main(["check-submission", str(good), "--top-n", "3"]) == 0
    assert "valid: 2 classes, 6 segment ids, 0 error(s), 0 warning(s)" in capsys.readouterr().out
    assert main(["check-submission", str(bad), "--top-n", "3"]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:2: error: entry 'vidA:36' starts at a frame that is not a multiple of 5" in out
    assert main(["check-submission", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv' does not exist" in capsys.readouterr().err
