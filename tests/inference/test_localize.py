"""videopool.inference.localize: segments cut as the 2019 convention says, a planted class found where it was
planted, one batched pass for all classes, the whole video handed row for row to a context model, a written
submission scored by the official metric to the value worked out by hand, and no partial CSV on an error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from videopool.data import SegmentAnnotations, Video, iter_videos, write_videos
from videopool.data.loader import make_loader
from videopool.inference import localize as localize_module
from videopool.inference.formats import read_segment_submission
from videopool.inference.localize import localize, split_segments
from videopool.metrics.segment import segment_ground_truth, segment_map

NUM_CLASSES = 3


class HandSetMeanScorer(nn.Module):
    """Average pooling of the rgb frames (mask respected) + a logistic layer whose weights are set by hand:
    class c reads feature dimension c, so a frame carrying 1.5 in dimension c is evidence for class c."""

    needs_video_context = False

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1024, NUM_CLASSES)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.weight[:, :NUM_CLASSES] = 6.0 * torch.eye(NUM_CLASSES)
            self.linear.bias.fill_(-3.0)
        self.calls = 0

    def forward(self, frames, mask, video_frames=None, video_mask=None):
        self.calls += 1
        x = frames["rgb"] * mask[..., None]
        mean = x.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return torch.sigmoid(self.linear(mean))


def synthetic_video(video_id: str, length: int, planted: dict[int, tuple[int, int, float]], ratings=None) -> Video:
    """``planted``: class -> (first second, last second + 1, amplitude); every other frame is zero."""
    rgb = np.zeros((length, 1024), np.float32)
    for label, (start, stop, amplitude) in planted.items():
        rgb[start:stop, label] = amplitude
    segments = None
    if ratings:
        labels, starts, scores = zip(*ratings)
        segments = SegmentAnnotations(np.array(labels), np.array(starts), np.array(scores, np.float32))
    return Video(video_id, sorted(planted), {"rgb": rgb, "audio": np.zeros((length, 128), np.float32)}, segments)


@pytest.fixture
def planted_data(tmp_path):
    """Class 0 strongly in seconds 10-19 of A and weakly in 0-4 of B, faintly in 5-9 of C; class 1 in 5-9 of B;
    class 2 in 15-19 of C. The ratings of class 0: A:10 +, B:0 +, C:5 -, A:0 + (A:15 is unrated)."""
    videos = [
        synthetic_video("A", 30, {0: (10, 20, 1.5)}, [(0, 10, 1.0), (0, 0, 1.0)]),
        synthetic_video("B", 12, {0: (0, 5, 0.8), 1: (5, 10, 1.5)}, [(0, 0, 1.0), (1, 5, 1.0)]),
        synthetic_video("C", 20, {0: (5, 10, 0.3), 2: (15, 20, 1.5)}, [(0, 5, 0.0), (2, 15, 1.0)]),
    ]
    path = tmp_path / "segments.tfrecord"
    write_videos(path, videos)
    return path


def loader_of(path, batch_size=2):
    return make_loader(str(path), num_classes=NUM_CLASSES, batch_size=batch_size, strategy="all",
                       num_frames=10**6, shuffle=False, workers=0)


def test_split_segments_matches_a_frame_by_frame_reference():
    rng = np.random.default_rng(0)
    lengths = [0, 1, 5, 7, 23, 47]
    for context in (0, 3):
        frames = torch.zeros(len(lengths), max(lengths), 4)
        mask = torch.zeros(len(lengths), max(lengths), dtype=torch.bool)
        for i, n in enumerate(lengths):
            frames[i, :n] = torch.from_numpy(rng.normal(size=(n, 4)).astype(np.float32))
            mask[i, :n] = True
        for drop in (False, True):
            got = split_segments({"rgb": frames}, mask, context, drop)
            expected = []  # (video row, start, frames [W, D], mask [W]) from the definition
            for i, n in enumerate(lengths):
                count = -(-n // 5)
                kept = range(6, count - 2) if drop else range(count)
                for s in kept:
                    window = torch.zeros(5 + 2 * context, 4)
                    real = torch.zeros(5 + 2 * context, dtype=torch.bool)
                    for j, t in enumerate(range(5 * s - context, 5 * s + 5 + context)):
                        if 0 <= t < n:
                            window[j], real[j] = frames[i, t], True
                    expected.append((i, 5 * s, window, real))
            assert got.video_rows.tolist() == [e[0] for e in expected]
            assert got.starts.tolist() == [e[1] for e in expected]
            assert torch.equal(got.frames["rgb"], torch.stack([e[2] for e in expected]).reshape(-1, 5 + 2 * context, 4))
            assert torch.equal(got.mask, torch.stack([e[3] for e in expected]).reshape(-1, 5 + 2 * context))
    # the 47-frame video: 10 segments (the last one partial, 2 frames); dropping the edges keeps 30 and 35
    only = split_segments({"rgb": frames[5:]}, mask[5:], 0, True)
    assert only.starts.tolist() == [30, 35]


def test_a_planted_class_ranks_its_seconds_first(planted_data):
    found = localize(HandSetMeanScorer(), loader_of(planted_data), [0, 1, 2], top_n=100, batch_size=4)
    ranked = dict(found.ranked())
    assert found.num_videos == 3 and found.num_segments == 6 + 3 + 4  # B's 12 frames end in a partial segment
    assert ranked[0][:4] == ["A:10", "A:15", "B:0", "C:5"]  # strong (a tie, kept in arrival order), weak, faint
    assert ranked[1][0] == "B:5" and ranked[2][0] == "C:15"
    assert all(len(ids) == 13 and len(set(ids)) == 13 for ids in ranked.values())


def test_top_n_bounds_every_class_and_a_whitelist_selects_columns(planted_data):
    found = localize(HandSetMeanScorer(), loader_of(planted_data), [2, 0], top_n=2, batch_size=5)
    rows = list(found.ranked())
    assert [c for c, _ in rows] == [0, 2] and all(len(ids) == 2 for _, ids in rows)
    assert rows[0][1] == ["A:10", "A:15"] and rows[1][1][0] == "C:15"


def test_all_classes_are_scored_in_one_pass_per_chunk(planted_data):
    one, every = HandSetMeanScorer(), HandSetMeanScorer()
    localize(one, loader_of(planted_data, batch_size=3), [0], top_n=5, batch_size=4)
    localize(every, loader_of(planted_data, batch_size=3), [0, 1, 2], top_n=5, batch_size=4)
    assert one.calls == every.calls == 4  # one loader batch of 13 segments, in chunks of 4: never per class


class ContextProbe(HandSetMeanScorer):
    """Scores from the segment, and checks that each row's video (handed row for row, or as a precomputed
    context: here the number of the video ``encode_context`` saw) is the video the segment came from."""

    needs_video_context = True
    context_size = 1

    def __init__(self) -> None:
        super().__init__()
        self.encoded: list[torch.Tensor] = []  # every video encode_context was given, in order

    def encode_context(self, video_frames, video_mask):
        first = len(self.encoded)
        self.encoded.extend(video_frames["rgb"][i][video_mask[i]] for i in range(video_mask.shape[0]))
        return torch.arange(first, len(self.encoded), dtype=torch.float32)[:, None]

    def forward(self, frames, mask, video_frames=None, video_mask=None, *, context=None):
        if context is not None:
            videos = [self.encoded[int(c)] for c in context[:, 0]]
        else:
            assert video_frames is not None and video_frames["rgb"].shape[0] == frames["rgb"].shape[0]
            videos = [video_frames["rgb"][row][video_mask[row]] for row in range(mask.shape[0])]
        assert len(videos) == mask.shape[0]
        for row, video in enumerate(videos):
            segment = frames["rgb"][row][mask[row]]
            assert any(torch.equal(video[o:o + len(segment)], segment) for o in range(0, len(video), 5))
            self.rows_checked = getattr(self, "rows_checked", 0) + 1
        return super().forward(frames, mask)


@pytest.mark.parametrize("context_once", [True, False])
def test_a_context_model_gets_each_segments_whole_video(planted_data, context_once):
    probe = ContextProbe()
    found = localize(probe, loader_of(planted_data, batch_size=3), [0, 1, 2], top_n=3, batch_size=4,
                     context_once=context_once)
    assert probe.rows_checked == found.num_segments == 13
    assert len(probe.encoded) == (3 if context_once else 0)  # A, B and C encoded once each, or never
    assert dict(found.ranked())[0][:3] == ["A:10", "A:15", "B:0"]


def test_a_written_submission_scores_what_the_hand_computation_says(planted_data, tmp_path):
    out = tmp_path / "submission.csv"
    localize(HandSetMeanScorer(), loader_of(planted_data), [0, 1, 2], top_n=100).write(out)
    submission = read_segment_submission(out)
    truth = segment_ground_truth(iter_videos(str(planted_data)))
    # class 0, rated pairs in ranked order: A:10 +, (A:15 unrated, dropped), B:0 +, C:5 -, A:0 + ; N_0 = 3
    ap0 = (1 / 1 + 2 / 2 + 3 / 4) / 3
    # classes 1 and 2: their one rated positive ranks first -> AP 1
    assert segment_map(submission, truth) == pytest.approx((ap0 + 1 + 1) / 3, abs=1e-12)
    # cut at 3 ids per class: class 0 keeps A:10, A:15, B:0 -> (1/1 + 2/2) / 3
    assert segment_map(submission, truth, top_n=3) == pytest.approx((2 / 3 + 1 + 1) / 3, abs=1e-12)


def test_an_error_while_writing_leaves_no_partial_file(planted_data, tmp_path, monkeypatch):
    found = localize(HandSetMeanScorer(), loader_of(planted_data), [0, 1, 2], top_n=10)
    out = tmp_path / "submission.csv"
    out.write_text("the previous file\n")

    def failing_rows(handle, rows):
        handle.write("Class,Segments\n0,A:10\n")
        raise OSError("disk gone mid-write")

    monkeypatch.setattr(localize_module, "write_segment_rows", failing_rows)
    with pytest.raises(OSError, match="disk gone"):
        found.write(out)
    assert out.read_text() == "the previous file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["segments.tfrecord", "submission.csv"]


def test_the_timeline_of_a_rated_video_is_a_png_of_its_top_and_rated_classes(planted_data, tmp_path):
    from videopool.inference.timeline import plot_timeline, timeline_classes

    found = localize(HandSetMeanScorer(), loader_of(planted_data, batch_size=1), [0, 1, 2], top_n=5,
                     batch_size=4, timeline_video="A")  # A's 6 segments arrive in two chunks
    timeline = found.timeline
    assert timeline.video_id == "A" and sorted(timeline.starts.tolist()) == [0, 5, 10, 15, 20, 25]
    assert timeline_classes(timeline.scores, [1, 2], timeline.ratings, top=1)[-1] == 0  # rated, not whitelisted
    path = plot_timeline(tmp_path / "a.png", timeline, [0, 1, 2], class_names={0: "zero", 1: "one", 2: "two"})
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_context_model_sees_the_video_as_in_training_at_most_video_frames_evenly_spaced():
    from videopool.data.segments import even_frames
    from videopool.inference.localize import even_context

    lengths = [3, 10, 7]
    frames = torch.zeros(3, 10, 2)
    mask = torch.zeros(3, 10, dtype=torch.bool)
    for i, n in enumerate(lengths):
        frames[i, :n, 0] = torch.arange(n) + 1.0  # frame t carries t + 1
        mask[i, :n] = True
    context, kept = even_context({"x": frames}, mask, 4)
    for i, n in enumerate(lengths):
        expected = torch.from_numpy(even_frames(n, 4)).float() + 1
        assert torch.equal(context["x"][i, kept[i], 0], expected)
        assert bool((context["x"][i, ~kept[i]] == 0).all())
    same, same_mask = even_context({"x": frames}, mask, None)
    assert same["x"] is frames and same_mask is mask


def test_several_runs_are_averaged_and_only_a_context_member_gets_the_video(planted_data):
    from videopool.inference.localize import AveragedScorer

    plain, probe = HandSetMeanScorer(), ContextProbe()
    with torch.no_grad():
        plain.linear.bias.fill_(-1.0)
    averaged = AveragedScorer([plain, probe])
    assert averaged.needs_video_context
    found = localize(averaged, loader_of(planted_data), [0, 1, 2], top_n=13, timeline_video="B")
    frames = torch.zeros(1, 5, 1024)
    frames[0, :, 0] = 0.8  # B:0 carries 0.8 of class 0 (quantized in the file: compare loosely)
    expected = (plain({"rgb": frames}, torch.ones(1, 5, dtype=torch.bool)) +
                HandSetMeanScorer()({"rgb": frames}, torch.ones(1, 5, dtype=torch.bool))) / 2
    row = found.timeline.starts.tolist().index(0)
    assert np.allclose(found.timeline.scores[row], expected.detach().numpy()[0], atol=0.02)
    assert probe.rows_checked == found.num_segments
