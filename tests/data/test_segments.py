"""Segment samples (videopool.data.segments): windows with context masked at the video's edges, rated-pair masks,
mined negatives, the shipped 2019 whitelist, and the demo's segment splits."""

from __future__ import annotations

import numpy as np
import pytest

from videopool.data import SegmentAnnotations, Video, RecordError
from videopool.data.segments import SegmentLoader, collate_segments, segment_class_ids, segment_samples


def _video(num_frames=40, labels=(1, 4), starts=(0, 10, 10, 35), classes=(2, 2, 3, 1), scores=(1, 0, 1, 1)):
    rgb = np.arange(num_frames * 3, dtype=np.float32).reshape(num_frames, 3) + 1  # row t holds 3t+1 ... 3t+3
    audio = np.ones((num_frames, 2), dtype=np.float32)
    segments = SegmentAnnotations(labels=np.asarray(classes), start_times=np.asarray(starts),
                                  scores=np.asarray(scores, dtype=np.float32))
    return Video(id="v", labels=list(labels), features={"rgb": rgb, "audio": audio}, segments=segments)


def test_window_with_context_is_masked_and_zero_outside_the_video():
    video = _video()
    samples = {s["id"]: s for s in segment_samples(video, 6, context=3)}
    assert list(samples) == ["v:0", "v:10", "v:35"]  # one sample per unique start time
    first, last = samples["v:0"], samples["v:35"]
    assert first["frames"]["rgb"].shape == (11, 3)
    # frames -3..7: the three before the video are padding
    assert first["mask"].tolist() == [False] * 3 + [True] * 8
    assert (first["frames"]["rgb"][:3] == 0).all()
    assert np.array_equal(first["frames"]["rgb"][3:].numpy(), video.features["rgb"][0:8])
    # frames 32..42 of a 40-frame video: the last three are padding
    assert last["mask"].tolist() == [True] * 8 + [False] * 3
    assert np.array_equal(last["frames"]["rgb"][:8].numpy(), video.features["rgb"][32:40])
    assert (last["frames"]["rgb"][8:] == 0).all()
    middle = samples["v:10"]
    assert middle["mask"].all() and np.array_equal(middle["frames"]["rgb"].numpy(), video.features["rgb"][7:18])


def test_without_context_a_segment_is_its_five_frames():
    (sample, *_) = segment_samples(_video(), 6, context=0)
    assert sample["mask"].tolist() == [True] * 5
    assert np.array_equal(sample["frames"]["rgb"].numpy(), _video().features["rgb"][0:5])


def test_only_rated_pairs_are_marked_and_classes_of_one_start_are_merged():
    samples = {s["id"]: s for s in segment_samples(_video(), 6)}
    ten = samples["v:10"]
    assert ten["rated"].nonzero().flatten().tolist() == [2, 3]
    assert ten["targets"].tolist() == [0, 0, 0, 1, 0, 0]  # class 2 rated negative, class 3 positive
    assert not samples["v:0"]["mined"].any()  # no mined negatives unless asked


def test_mined_negatives_exclude_video_labels_and_positive_ratings():
    samples = {s["id"]: s for s in segment_samples(_video(), 6, mined_negatives=True)}
    # video labels 1, 4; positive ratings 2 (at 0), 3 (at 10), 1 (at 35) -> mined: 0 and 5, minus rated pairs
    assert samples["v:0"]["mined"].nonzero().flatten().tolist() == [0, 5]
    assert samples["v:10"]["mined"].nonzero().flatten().tolist() == [0, 5]


def test_segments_past_the_video_are_skipped_and_bad_labels_refused():
    video = _video(num_frames=12, starts=(0, 15), classes=(1, 1), scores=(1, 0))
    assert [s["id"] for s in segment_samples(video, 6)] == ["v:0"]
    with pytest.raises(RecordError, match="segment label 9 is outside"):
        segment_samples(_video(classes=(2, 2, 9, 1)), 6)


def test_whole_video_is_padded_with_a_mask_in_the_batch():
    short, long_ = _video(num_frames=20, starts=(0,), classes=(1,), scores=(1,)), _video()
    batch = collate_segments(segment_samples(short, 6, with_video=True) + segment_samples(long_, 6, with_video=True))
    assert batch.video_frames["rgb"].shape == (4, 40, 3)
    assert batch.video_mask[0].sum() == 20 and batch.video_mask[1:].all()
    assert (batch.video_frames["rgb"][0, 20:] == 0).all()
    capped = segment_samples(long_, 6, with_video=True, video_frames=8)[0]["video"]["rgb"]
    assert np.array_equal(capped.numpy(), long_.features["rgb"][::5])  # evenly spaced


def test_packed_labels_weigh_rated_pairs_only():
    batch = collate_segments(segment_samples(_video(), 6, mined_negatives=True))
    packed = batch.packed_labels(positive_weight=1.5, negative_weight=0.5, mined_weight=0.25)
    assert packed.shape == (3, 3, 6)
    assert packed[1, 1].tolist() == [0, 0, 0.5, 1.5, 0, 0]  # sample v:10: class 2 negative, class 3 positive
    assert packed[1, 2].tolist() == [0.25, 0, 0, 0, 0, 0.25]


def test_the_2019_whitelist_ships_with_the_package():
    ids = segment_class_ids()
    assert len(ids) == 1000 and len(set(ids.tolist())) == 1000
    assert ids.min() == 3 and ids.max() == 1831  # spec §1.4


def test_loader_shuffles_deterministically_per_epoch(tmp_path):
    from videopool.data import FeatureSpec, Schema, write_videos

    schema = Schema(features=(FeatureSpec("rgb", 3, "float"), FeatureSpec("audio", 2, "float")), level="frame")
    videos = [_video() for _ in range(4)]
    for i, v in enumerate(videos):
        v.id = f"v{i}"
    write_videos(tmp_path / "a.tfrecord", videos[:2], schema=schema)
    write_videos(tmp_path / "b.tfrecord", videos[2:], schema=schema)
    files = [str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")]

    def ids(epoch, shuffle=True):
        loader = SegmentLoader(files, 6, batch_size=5, shuffle=shuffle, seed=1, epoch=epoch, shuffle_buffer=4)
        return [i for batch in loader for i in batch.ids]

    assert ids(0) == ids(0) and sorted(ids(0)) == sorted(ids(0, shuffle=False))
    assert ids(0) != ids(1)
    assert ids(0, shuffle=False)[:3] == ["v0:0", "v0:10", "v0:35"]


def test_demo_segment_ratings_follow_the_planted_evidence():
    from videopool.demo.segments import SEGMENT_SPLITS, generate_segment_video
    from videopool.demo.world import DemoConfig, DemoWorld

    config = DemoConfig(num_classes=12, rgb_size=16, audio_size=8, rgb_latent=8, audio_latent=4, min_frames=60,
                        max_frames=120)
    world = DemoWorld(config, 0)
    rated = 0
    for index in range(6):
        video, latent = generate_segment_video(world, 0, "segments-train", index)
        again, _ = generate_segment_video(world, 0, "segments-train", index)
        assert np.array_equal(video.features["rgb"], again.features["rgb"])  # deterministic
        segments = video.segments
        for label, start, score in zip(segments.labels, segments.start_times, segments.scores):
            covered = int(latent.evidence[int(label)][start:start + 5].sum())
            assert (covered >= 3) if score > 0 else (covered == 0)
            assert 30 <= start < (latent.num_frames // 5 - 2) * 5  # never the first 6 or last 2 segments
            rated += 1
    assert rated > 0 and set(SEGMENT_SPLITS.values()).isdisjoint({1, 2, 3})  # not the demo splits' streams
