"""``videopool localize`` end to end on a trained video-level run (a context-ignoring segment scorer): the CSV
has a row per whitelisted class with at most --top-n ids, passes ``check-submission``, and equals what the
Python API ranks; --plot writes the timeline PNG; a user's mistake is exit 2 with one line."""

from __future__ import annotations

import pytest

from tests.tiny_run import validate_glob
from videopool.cli.main import main
from videopool.inference.formats import read_segment_submission


def run(argv, capsys):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr()


def test_localize_writes_a_submission_that_check_submission_accepts(trained_run, tiny_data, tmp_path, capsys):
    whitelist = tmp_path / "whitelist.csv"
    whitelist.write_text("Index\n1\n4\n5\n")
    out, png = tmp_path / "submission.csv", tmp_path / "timeline.png"
    code, captured = run(["localize", trained_run, "--data", validate_glob(tiny_data), "--out", out, "--top-n", "4",
                          "--classes", whitelist, "--plot", "v001", "--plot-out", png, "--vocabulary",
                          tiny_data / "vocabulary.csv", "--workers", "0", "--no-progress", "--batch-size", "3"],
                         capsys)
    assert code == 0, captured.err
    assert "for 3 classes" in captured.out and png.read_bytes()[:4] == b"\x89PNG"
    submission = read_segment_submission(out)
    assert list(submission) == [1, 4, 5] and all(len(ids) == 4 for ids in submission.values())
    assert out.read_text().startswith("Class,Segments\n")
    code, captured = run(["check-submission", out, "--classes", whitelist, "--top-n", "4"], capsys)
    assert code == 0 and ": valid: 3 classes, 12 segment ids, 0 error(s)" in captured.out

    # the same ranking as the Python API with the model loaded by hand
    from videopool.data.loader import make_loader
    from videopool.inference.localize import localize
    from videopool.models import load_model

    model, info = load_model(trained_run)
    loader = make_loader(validate_glob(tiny_data), num_classes=info["num_classes"], batch_size=5, strategy="all",
                         num_frames=10**6, shuffle=False, workers=0)
    assert dict(localize(model, loader, [1, 4, 5], top_n=4).ranked()) == submission


@pytest.mark.parametrize("extra, fragment", [
    (["--plot", "v001"], "--plot VIDEO_ID and --plot-out FILE.png go together"),
    (["--plot", "nosuchvideo", "--plot-out", "{tmp}/t.png"], "--plot nosuchvideo: no video with this id"),
    (["--classes", "{tmp}/outside.csv"], "class id 9 is outside the model's 6 classes"),
    (["--classes", "{tmp}/words.csv"], "words.csv:3: class id 'x' is not an integer"),
    (["--top-n", "0"], "--top-n: must be a positive integer, got '0'"),
    (["--drop-edge-segments"], "no segment to score (no video with frames after dropping the edge segments)"),
])
def test_a_mistake_is_one_line_and_exit_2(trained_run, tiny_data, tmp_path, capsys, extra, fragment):
    (tmp_path / "outside.csv").write_text("Index\n1\n9\n")
    (tmp_path / "words.csv").write_text("Index\n1\nx\n")
    argv = ["localize", trained_run, "--data", validate_glob(tiny_data), "--out", tmp_path / "s.csv", "--workers",
            "0", "--no-progress", *[a.format(tmp=tmp_path) for a in extra]]
    try:
        code, captured = run(argv, capsys)
    except SystemExit as exit:  # argparse
        code, captured = exit.code, capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2 and len(lines) == 1 and fragment in lines[0], captured.err
    assert lines[0].startswith("videopool localize: error: ")
