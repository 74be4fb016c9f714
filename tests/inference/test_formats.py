import io

import numpy as np
import pytest
import torch

from videopool.inference.formats import (
    SegmentSubmissionWriter,
    VideoPredictionWriter,
    format_score,
    read_segment_submission,
    read_video_predictions,
)


def test_format_score_is_six_significant_digits():
    assert format_score(0.98765432) == "0.987654"
    assert format_score(0.5) == "0.5"
    assert format_score(1.0) == "1"
    assert format_score(0.0000123456789) == "1.23457e-05"


def test_video_csv_layout_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.random((5, 30)).astype(np.float32)
    ids = [f"vid{i}" for i in range(5)]
    path = tmp_path / "predictions.csv"
    with VideoPredictionWriter(path, top_k=4) as writer:
        writer.write_batch(ids[:2], scores[:2])
        writer.write_batch(ids[2:], torch.from_numpy(scores[2:]))
    lines = path.read_text().splitlines()
    assert lines[0] == "VideoId,LabelConfidencePairs"
    assert len(lines) == 6
    first_tokens = lines[1].split(",")[1].split()
    top = np.argsort(-scores[0])[:4]
    assert [int(t) for t in first_tokens[0::2]] == top.tolist()
    assert first_tokens[1::2] == ["%g" % scores[0, c] for c in top]

    parsed = read_video_predictions(path)
    assert list(parsed) == ids
    for row, video_id in enumerate(ids):
        classes = [c for c, _ in parsed[video_id]]
        values = [s for _, s in parsed[video_id]]
        assert classes == np.argsort(-scores[row])[:4].tolist()
        assert values == sorted(values, reverse=True)
        np.testing.assert_allclose(values, scores[row, classes], rtol=1e-5)


def test_ties_are_written_in_class_order():
    buffer = io.StringIO()
    VideoPredictionWriter(buffer, top_k=3).write_batch(["v"], np.array([[0.2, 0.5, 0.5, 0.5, 0.1]]))
    assert buffer.getvalue().splitlines()[1] == "v,1 0.5 2 0.5 3 0.5"


def test_names_column(tmp_path):
    path = tmp_path / "named.csv"
    with VideoPredictionWriter(path, top_k=2, class_names=["Games", "Vehicle", "Car, toy"]) as writer:
        writer.write_batch(["a"], np.array([[0.1, 0.7, 0.9]]))
    lines = path.read_text().splitlines()
    assert lines[0] == "VideoId,LabelConfidencePairs,LabelNames"
    assert lines[1] == 'a,2 0.9 1 0.7,"Car, toy|Vehicle"'
    assert read_video_predictions(path) == {"a": [(2, pytest.approx(0.9)), (1, pytest.approx(0.7))]}


def test_reader_reports_bad_rows(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("VideoId,LabelConfidencePairs\nv1,3 0.5 4\n")
    with pytest.raises(ValueError, match="bad.csv:2.*odd number"):
        read_video_predictions(path)


def test_segment_writer_orders_caps_and_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    segment_ids = [f"v{i // 4}:{5 * (i % 4)}" for i in range(40)]
    scores = rng.random((40, 10)).astype(np.float32)
    whitelist = [2, 5, 7]
    writer = SegmentSubmissionWriter(whitelist, max_per_class=6)
    for start in range(0, 40, 7):  # several adds force pruning (> cap pending)
        writer.add(segment_ids[start : start + 7], scores[start : start + 7])
    path = tmp_path / "segments.csv"
    writer.write(path)
    text = path.read_text()
    assert text.startswith("Class,Segments\n") and text.endswith("\n")
    parsed = read_segment_submission(path)
    assert list(parsed) == whitelist
    for c in whitelist:
        expected = [segment_ids[i] for i in np.argsort(-scores[:, c], kind="stable")[:6]]
        assert parsed[c] == expected


def test_segment_writer_top_k_per_segment():
    scores = np.array([[0.9, 0.8, 0.1], [0.2, 0.3, 0.4]], dtype=np.float32)
    writer = SegmentSubmissionWriter([0, 1, 2], max_per_class=10, top_k=1)
    writer.add(["a:0", "b:5"], scores)
    assert writer.ranked() == {0: ["a:0"], 1: [], 2: ["b:5"]}


def test_segment_reader_skips_header_and_strips(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_text("Class,Segments\n3,a:0 b:5\n4,\n10,c:35 \n\n")
    assert read_segment_submission(path) == {3: ["a:0", "b:5"], 4: [], 10: ["c:35"]}
    path.write_text("3,a:0 b:5\n")  # headerless files (pre-2019 scripts) are read too
    assert read_segment_submission(path) == {3: ["a:0", "b:5"]}
    path.write_text("Class,Segments\nx,a:0\n")
    with pytest.raises(ValueError, match="sub.csv:2"):
        read_segment_submission(path)


def test_segment_file_scores_with_segment_map(tmp_path):
    from videopool.metrics import segment_map

    segment_ids = ["a:0", "a:5", "b:0", "b:5"]
    truth = {("a:0", 1): 1.0, ("a:5", 1): 0.0, ("b:0", 1): 1.0, ("b:5", 2): 1.0, ("a:0", 2): 0.0}
    scores = np.array([[0, 0.9, 0.1], [0, 0.8, 0.2], [0, 0.7, 0.3], [0, 0.1, 0.9]], dtype=np.float32)
    writer = SegmentSubmissionWriter([1, 2], max_per_class=3)
    writer.add(segment_ids, scores)
    path = tmp_path / "submission.csv"
    writer.write(path)
    # class 1: a:0 (+), a:5 (-), b:0 (+) -> (1 + 2/3) / 2; class 2: b:5 (+), then unrated ids -> 1
    assert segment_map(read_segment_submission(path), truth) == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
