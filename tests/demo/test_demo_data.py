import csv
import filecmp
import json
import os

import numpy as np
import pytest
import torch

from videopool.cli.main import main as cli_main
from videopool.demo.dataset import generate_video, make_demo_data, rate_segments
from videopool.demo.world import DemoConfig, DemoWorld
from videopool.data.io import iter_videos
from videopool.data.schema import dequantize
from videopool.data.vocabulary import VOCABULARY_COLUMNS

SMALL = dict(train_videos=12, validate_videos=8, test_videos=3, videos_per_shard=4, progress=False,
             config=DemoConfig(num_classes=40, max_frames=120))


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    make_demo_data(out, seed=3, **SMALL)
    return out


def test_same_seed_gives_identical_bytes_and_other_seed_differs(demo_dir, tmp_path):
    again, other = tmp_path / "again", tmp_path / "other"
    make_demo_data(again, seed=3, **SMALL)
    make_demo_data(other, seed=4, **SMALL)
    names = sorted(os.listdir(demo_dir))
    assert names == sorted(os.listdir(again))
    assert all(filecmp.cmp(demo_dir / n, again / n, shallow=False) for n in names)
    assert not filecmp.cmp(demo_dir / "train-00000-of-00003.tfrecord", other / "train-00000-of-00003.tfrecord",
                           shallow=False)


def test_files_and_shard_names(demo_dir):
    names = set(os.listdir(demo_dir))
    assert {f"train-{i:05d}-of-00003.tfrecord" for i in range(3)} <= names
    assert {"validate-00000-of-00002.tfrecord", "validate-00001-of-00002.tfrecord",
            "test-00000-of-00001.tfrecord", "vocabulary.csv", "manifest.json", "README.md",
            "test_labels.csv"} <= names


def test_records_have_the_stated_statistics(demo_dir):
    train = list(iter_videos(str(demo_dir / "train-*.tfrecord"), num_classes=40))
    assert len(train) == 12 and len({v.id for v in train}) == 12
    for video in train:
        assert video.features["rgb"].shape[1] == 1024 and video.features["audio"].shape[1] == 128
        assert 60 <= video.num_frames <= 120
        assert video.features["audio"].shape[0] == video.num_frames
        assert -2.0 <= video.features["rgb"].min() and video.features["rgb"].max() <= 2.01
        assert video.labels and video.segments is None
    test = list(iter_videos(str(demo_dir / "test-*.tfrecord")))
    assert len(test) == 3 and all(not v.labels for v in test)
    manifest = json.loads((demo_dir / "manifest.json").read_text())
    assert manifest["splits"]["train"]["mean_labels_per_video"] == pytest.approx(
        np.mean([len(v.labels) for v in train]), abs=1e-3)


def test_about_three_labels_per_video_with_power_law_frequencies():
    world = DemoWorld(DemoConfig(), seed=0)
    counts = np.zeros(256)
    sizes = []
    for index in range(800):
        labels = world.sample_video(np.random.default_rng([0, 1, index])).labels
        sizes.append(len(labels))
        counts[labels] += 1
    assert 2.5 <= np.mean(sizes) <= 3.5
    leaves = counts[world.config.num_verticals:]
    head, tail = leaves[:20].mean(), leaves[-20:].mean()
    assert head > 3 * tail > 0  # frequent leaves are much more frequent than rare ones
    # A vertical is on exactly when one of its leaves is.
    video = world.sample_video(np.random.default_rng(7))
    verticals = {int(world.leaf_vertical[k - world.config.num_verticals]) for k in video.labels
                 if k >= world.config.num_verticals}
    assert verticals == {k for k in video.labels if k < world.config.num_verticals}


def test_validate_records_carry_segment_ratings_that_follow_the_rules(demo_dir):
    videos = list(iter_videos(str(demo_dir / "validate-*.tfrecord"), num_classes=40))
    assert len(videos) == 8
    rated = 0
    for video in videos:
        seg = video.segments
        assert seg is not None and seg.end_times is not None
        segments = video.num_frames // 5
        for label, start, end, score in zip(seg.labels, seg.start_times, seg.end_times, seg.scores):
            assert start % 5 == 0 and end == start + 5
            assert 6 <= start // 5 < segments - 2  # first 6 and last 2 segments never rated
            assert label in video.labels and score in (0.0, 1.0)
            rated += 1
        if len(seg.labels):
            assert seg.scores.max() == 1.0
    assert rated > 0


def test_segment_ratings_reflect_where_the_evidence_is():
    world = DemoWorld(DemoConfig(num_classes=40), seed=1)
    gaps = []
    for index in range(80):
        rng = np.random.default_rng(index)
        latent = world.sample_video(rng)
        seg = rate_segments(latent, rng)
        if not len(seg.labels) or world.mechanism(int(seg.labels[0])) != "visual":
            continue
        prototype = world.rgb_prototype[int(seg.labels[0]) - world.config.num_verticals]
        strength = latent.rgb_latent @ prototype
        by_score = {1.0: [], 0.0: []}
        for start, score in zip(seg.start_times, seg.scores):
            by_score[float(score)].append(strength[start:start + 5].mean())
        if by_score[1.0] and by_score[0.0]:
            gaps.append(min(by_score[1.0]) - max(by_score[0.0]))
    assert len(gaps) >= 3 and np.mean(gaps) > 0


def test_vocabulary_has_youtube8m_columns_and_hierarchical_names(demo_dir):
    with open(demo_dir / "vocabulary.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert tuple(rows[0]) == VOCABULARY_COLUMNS
    assert [int(r["Index"]) for r in rows] == list(range(40))
    leaves = [r for r in rows if "/" in r["Name"]]
    assert len(leaves) == 38 and all(r["Vertical1"] == r["Name"].split("/")[0] for r in leaves)
    assert len({r["Name"] for r in rows}) == 40
    train = list(iter_videos(str(demo_dir / "train-*.tfrecord")))
    assert sum(int(r["TrainVideoCount"]) for r in rows) == sum(len(v.labels) for v in train)


def test_refuses_to_overwrite_without_force(demo_dir):
    with pytest.raises(FileExistsError, match="force"):
        make_demo_data(demo_dir, seed=3, **SMALL)


def test_cli_writes_the_dataset(tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli_main(["make-demo-data", str(out), "--seed", "2", "--train-videos", "4", "--validate-videos", "2",
                     "--test-videos", "0", "--classes", "20", "--quiet"])
    assert code == 0 and "train: 4 videos" in capsys.readouterr().out
    assert cli_main(["make-demo-data", str(out), "--train-videos", "1", "--quiet"]) == 2  # without --force
    assert "--force" in capsys.readouterr().err
    assert cli_main(["make-demo-data", str(out), "--train-videos", "1", "--validate-videos", "0",
                     "--test-videos", "0", "--classes", "20", "--quiet", "--force"]) == 0
    assert sorted(p for p in os.listdir(out) if p.endswith(".tfrecord")) == ["train-00000-of-00001.tfrecord"]


def _auc(scores, labels):
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    positives = labels.astype(bool)
    n1, n0 = positives.sum(), (~positives).sum()
    return (ranks[positives].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


def test_distribution_classes_defeat_mean_pooling_but_not_a_bag_of_prototypes():
    """Logistic regression on mean frames is at chance on distribution classes (and not on
    visual ones); scoring frames against the class direction separates them."""
    config = DemoConfig(num_classes=24, rgb_size=128, audio_size=32, rgb_latent=32, audio_latent=16,
                        min_frames=60, max_frames=90, frequency_exponent=0.0,
                        theme_probability=0.0)  # no co-occurrence: siblings' visual evidence would leak
    world = DemoWorld(config, seed=0)
    means, frames_per_video, labels = [], [], []
    for index in range(700):
        video, _ = generate_video(world, 0, "train", index)
        frames = np.concatenate([dequantize(video.features["rgb"]), dequantize(video.features["audio"])], 1)
        frames /= np.linalg.norm(frames, axis=1, keepdims=True)
        means.append(frames.mean(0))
        frames_per_video.append(frames)
        target = np.zeros(config.num_classes, np.float32)
        target[video.labels] = 1
        labels.append(target)
    x, y = torch.tensor(np.stack(means)), torch.tensor(np.stack(labels))
    x = (x - x[:500].mean(0)) / x[:500].std(0)
    linear = torch.nn.Linear(x.shape[1], config.num_classes)
    optimizer = torch.optim.Adam(linear.parameters(), lr=0.01, weight_decay=1e-3)
    for _ in range(300):
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(linear(x[:500]), y[:500]).backward()
        optimizer.step()
    with torch.no_grad():
        held_out = linear(x[500:]).numpy()
    y_test = y[500:].numpy()

    def classes(mechanism):
        return [k for k in range(config.num_classes)
                if world.mechanism(k) == mechanism and 5 <= y_test[:, k].sum()]

    distribution, visual = classes("distribution"), classes("visual")
    assert len(distribution) >= 3 and len(visual) >= 3
    mean_auc = {m: np.mean([_auc(held_out[:, k], y_test[:, k]) for k in ks])
                for m, ks in (("distribution", distribution), ("visual", visual))}
    assert mean_auc["distribution"] < 0.62  # chance is 0.5
    assert mean_auc["visual"] > 0.75
    # Bag of prototypes: count frames far from the background along the class direction.
    oracle = []
    for k in distribution:
        direction = world.direction[k - config.num_verticals] @ world.rgb_projection.numpy()
        direction /= np.linalg.norm(direction)
        scores = [np.mean(np.abs(f[:, :config.rgb_size] @ direction) > 0.2)
                  for f in frames_per_video[500:]]
        oracle.append(_auc(np.array(scores), y_test[:, k]))
    assert np.mean(oracle) > 0.9
