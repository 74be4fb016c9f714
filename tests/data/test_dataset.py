import collections
import os
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from videopool.data.collate import collate_videos
from videopool.data.dataset import VideoIterableDataset, VideoMapDataset
from videopool.data.sharding import partition_files, resolve_world, shuffle_buffer
from videopool.data.errors import RecordError
from videopool.data.io import write_videos
from videopool.data.sampling import FrameSelection
from videopool.data.schema import FeatureSpec, Schema
from videopool.data.video import Video

SCHEMA = Schema(features=(FeatureSpec("rgb", 6), FeatureSpec("audio", 3)))
NUM_CLASSES = 10


def write_shards(directory, records_per_file):
    """Tiny shards; video ``f{file}r{record}`` has ``3 + record % 5`` frames whose bytes encode it."""
    ids = []
    for number, count in enumerate(records_per_file):
        videos = []
        for record in range(count):
            frames = 3 + record % 5
            video_id = f"f{number}r{record}"
            rgb = np.full((frames, 6), (number * 7 + record) % 256, dtype=np.uint8)
            rgb[:, 0] = np.arange(frames)
            audio = np.full((frames, 3), record % 256, dtype=np.uint8)
            videos.append(Video(video_id, [record % NUM_CLASSES, (number + 3) % NUM_CLASSES],
                                {"rgb": rgb, "audio": audio}))
            ids.append(video_id)
        write_videos(os.path.join(directory, f"shard-{number:03d}.tfrecord"), videos, schema=SCHEMA)
    return ids


def make_dataset(directory, **kwargs):
    kwargs.setdefault("num_classes", NUM_CLASSES)
    kwargs.setdefault("schema", SCHEMA)
    return VideoIterableDataset(os.path.join(directory, "*.tfrecord"), **kwargs)


def ids_of(items):
    return [item["id"] for item in items]


@pytest.mark.parametrize("records_per_file,num_workers,world_size", [
    ([4, 4, 4], 1, 1),
    ([5, 3, 6, 2, 7], 2, 2),   # 5 files, 4 readers: uneven
    ([9, 4], 2, 2),            # fewer files than readers: records split by index
    ([10], 3, 1),              # one file, three workers
    ([3, 8, 1, 5, 6, 2, 4], 3, 2),
    ([6, 0, 5], 2, 3),         # an empty file
])
@pytest.mark.parametrize("shuffle", [False, True])
def test_every_record_exactly_once_across_workers_and_ranks(tmp_path, records_per_file, num_workers,
                                                           world_size, shuffle):
    expected = write_shards(tmp_path, records_per_file)
    seen = []
    for rank in range(world_size):
        dataset = make_dataset(tmp_path, rank=rank, world_size=world_size, shuffle=shuffle, shuffle_buffer=3,
                               seed=5, epoch=2)
        for worker in range(num_workers):
            seen += ids_of(dataset.iter_worker(worker, num_workers))
    assert collections.Counter(seen) == collections.Counter(expected)


@pytest.mark.parametrize("records_per_file", [[7, 5, 6], [11]])
def test_real_dataloader_with_two_workers_on_two_ranks_reads_everything_once(tmp_path, records_per_file):
    expected = write_shards(tmp_path, records_per_file)
    reference = {item["id"]: item for item in make_dataset(tmp_path, shuffle=False)}
    seen = []
    for rank in range(2):
        dataset = make_dataset(tmp_path, rank=rank, world_size=2, shuffle=True, shuffle_buffer=4,
                               dequantize=rank == 0)  # rank 1 ships uint8 and dequantizes in the collate
        loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate_videos)
        for batch in loader:
            seen += batch.ids
            for i, video_id in enumerate(batch.ids):
                n = int(batch.mask[i].sum())
                assert torch.equal(batch.frames["rgb"][i, :n], reference[video_id]["frames"]["rgb"])
                assert torch.count_nonzero(batch.frames["rgb"][i, n:]) == 0
    assert collections.Counter(seen) == collections.Counter(expected)


def test_set_epoch_reaches_persistent_workers(tmp_path):
    write_shards(tmp_path, [5, 5, 5])
    dataset = make_dataset(tmp_path, shuffle_buffer=4, seed=9)
    loader = DataLoader(dataset, batch_size=4, num_workers=1, persistent_workers=True, collate_fn=collate_videos)
    orders = []
    for epoch in range(2):
        dataset.set_epoch(epoch)
        orders.append([video_id for batch in loader for video_id in batch.ids])
    expected = [ids_of(make_dataset(tmp_path, shuffle_buffer=4, seed=9, epoch=epoch)) for epoch in range(2)]
    assert orders == expected and orders[0] != orders[1]


def test_partition_rule_is_round_robin_then_record_modulo():
    assert partition_files(5, 1, 2) == [(1, 1, 0), (3, 1, 0)]
    assert partition_files(2, 3, 5) == [(1, 2, 1)]  # readers 1 and 3 share file 1
    assert partition_files(2, 4, 5) == [(0, 3, 2)]  # readers 0, 2, 4 share file 0


def test_shuffle_is_deterministic_per_seed_and_epoch_and_changes_across_epochs(tmp_path):
    write_shards(tmp_path, [6, 6, 6, 6])
    order = lambda **kw: ids_of(make_dataset(tmp_path, shuffle_buffer=8, **kw))  # noqa: E731
    first = order(seed=1, epoch=0)
    assert order(seed=1, epoch=0) == first
    other_epoch = order(seed=1, epoch=1)
    assert other_epoch != first and sorted(other_epoch) == sorted(first)
    assert order(seed=2, epoch=0) != first
    dataset = make_dataset(tmp_path, shuffle_buffer=8, seed=1)
    dataset.set_epoch(1)
    assert ids_of(dataset) == other_epoch
    unshuffled = ids_of(make_dataset(tmp_path, shuffle=False))
    assert unshuffled == [f"f{f}r{r}" for f in range(4) for r in range(6)]


def test_shuffle_buffer_holds_at_most_its_size():
    pulled = 0

    def source():
        nonlocal pulled
        for i in range(100):
            pulled += 1
            yield i

    out = []
    for value in shuffle_buffer(source(), 7, np.random.default_rng(0)):
        out.append(value)
        assert pulled - len(out) <= 7  # items held in the buffer
        assert value <= len(out) - 1 + 7  # never more than `size` places early
    assert sorted(out) == list(range(100)) and out != list(range(100))


def test_items_hold_selected_frames_labels_and_true_frame_count(tmp_path):
    write_shards(tmp_path, [5])
    items = list(make_dataset(tmp_path, shuffle=False))
    item = items[4]  # 3 + 4 = 7 frames
    assert item["num_frames"] == 7 and item["frames"]["rgb"].shape == (7, 6)
    assert item["frames"]["rgb"].dtype == torch.float32
    assert item["labels"].tolist() == [1.0 if k in (4, 3) else 0.0 for k in range(NUM_CLASSES)]
    sampled = list(make_dataset(tmp_path, shuffle=False, selection=FrameSelection("random", 11)))
    assert sampled[4]["frames"]["rgb"].shape == (11, 6) and sampled[4]["num_frames"] == 7
    # Column 0 holds the frame index, so it shows which frames were picked.
    picked = torch.round((sampled[4]["frames"]["rgb"][:, 0] + 1.9921875) / (4 / 255)).long()
    assert picked.min() >= 0 and picked.max() <= 6
    uniform = list(make_dataset(tmp_path, shuffle=False, selection=FrameSelection("uniform", 4)))
    codes = torch.round((uniform[4]["frames"]["rgb"][:, 0] + 1.9921875) / (4 / 255)).long()
    assert codes.tolist() == [0, 1, 3, 5]  # floor(i/4 * 7)


def test_uint8_items_collate_to_the_same_batch_as_float_items(tmp_path):
    write_shards(tmp_path, [6])
    floats = collate_videos(list(make_dataset(tmp_path, shuffle=False)))
    codes = list(make_dataset(tmp_path, shuffle=False, dequantize=False))
    assert codes[0]["frames"]["rgb"].dtype == torch.uint8
    from_codes = collate_videos(codes)
    for name in ("rgb", "audio"):
        assert torch.equal(floats.frames[name], from_codes.frames[name])
    assert torch.equal(floats.mask, from_codes.mask)


def test_feature_names_restrict_modalities(tmp_path):
    write_shards(tmp_path, [2])
    item = next(iter(make_dataset(tmp_path, feature_names=["audio"])))
    assert list(item["frames"]) == ["audio"]
    inferred = next(iter(VideoIterableDataset(str(tmp_path), num_classes=NUM_CLASSES)))  # schema inferred
    assert list(inferred["frames"]) == ["rgb", "audio"]


def test_map_dataset_matches_iterable_content(tmp_path):
    write_shards(tmp_path, [4, 0, 3, 5])
    mapped = VideoMapDataset(os.path.join(tmp_path, "*.tfrecord"), num_classes=NUM_CLASSES, schema=SCHEMA)
    streamed = list(make_dataset(tmp_path, shuffle=False))
    assert len(mapped) == len(streamed) == 12
    for i, item in enumerate(streamed):
        got = mapped[i]
        assert got["id"] == item["id"] and torch.equal(got["labels"], item["labels"])
        for name in ("rgb", "audio"):
            assert torch.equal(got["frames"][name], item["frames"][name])
    assert mapped[-1]["id"] == streamed[-1]["id"]
    with pytest.raises(IndexError):
        mapped[12]
    assert mapped.offsets(0).dtype == np.int64 and len(mapped.offsets(1)) == 0


def test_map_dataset_random_selection_is_stable_within_an_epoch(tmp_path):
    write_shards(tmp_path, [5])
    mapped = VideoMapDataset(str(tmp_path), num_classes=NUM_CLASSES, schema=SCHEMA,
                             selection=FrameSelection("random", 9), seed=3)
    first = mapped[2]["frames"]["rgb"]
    assert torch.equal(mapped[2]["frames"]["rgb"], first)
    mapped.set_epoch(1)
    assert not torch.equal(mapped[2]["frames"]["rgb"], first)


def test_map_dataset_with_distributed_sampler_and_workers(tmp_path):
    expected = write_shards(tmp_path, [5, 4])
    mapped = VideoMapDataset(str(tmp_path), num_classes=NUM_CLASSES, schema=SCHEMA)
    seen = []
    for rank in range(3):
        sampler = DistributedSampler(mapped, num_replicas=3, rank=rank, shuffle=True, drop_last=False)
        loader = DataLoader(mapped, batch_size=2, sampler=sampler, num_workers=2 if rank == 0 else 0,
                            collate_fn=collate_videos)
        seen += [video_id for batch in loader for video_id in batch.ids]
    assert collections.Counter(seen) == collections.Counter(expected)  # 9 videos, 3 ranks: no padding


def test_no_matching_files_is_an_error_naming_the_pattern(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        VideoIterableDataset(os.path.join(tmp_path, "nothing-here-*.tfrecord"), num_classes=3)


def test_construction_lists_names_only(tmp_path):
    write_shards(tmp_path, [1, 1])
    dataset = make_dataset(tmp_path)
    os.remove(os.path.join(tmp_path, "shard-001.tfrecord"))  # nothing was opened or cached
    with pytest.raises(RecordError, match="shard-001"):
        list(dataset)


def test_bad_records_raise_or_are_skipped_per_on_error(tmp_path, fixtures_dir):
    shutil.copy(os.path.join(fixtures_dir, "corrupt_payload_crc.tfrecord"), tmp_path / "a.tfrecord")
    shutil.copy(os.path.join(fixtures_dir, "frame_level.tfrecord"), tmp_path / "b.tfrecord")
    pattern = os.path.join(tmp_path, "*.tfrecord")
    strict = VideoIterableDataset(pattern, num_classes=4716, shuffle=False)
    with pytest.raises(RecordError, match="a.tfrecord.*record 0"):
        list(strict)
    lenient = VideoIterableDataset(pattern, num_classes=4716, shuffle=False, on_error="skip")
    with pytest.warns(RuntimeWarning, match="skipped 1 bad record"):
        items = list(lenient)
    assert len(items) == 9  # 4 good records of a.tfrecord + 5 of b.tfrecord
    mapped = VideoMapDataset(pattern, num_classes=4716, on_error="skip")
    with pytest.warns(RuntimeWarning):
        assert mapped[0] is None
    good = mapped[1]
    with pytest.warns(RuntimeWarning):
        assert collate_videos([mapped[0], good]).ids == [good["id"]]


def test_label_out_of_range_is_a_bad_record(tmp_path):
    write_shards(tmp_path, [3, 3])  # file 1 labels every video with class 4
    with pytest.raises(RecordError, match="shard-001.*outside"):
        list(make_dataset(tmp_path, num_classes=4, shuffle=False))
    with pytest.warns(RuntimeWarning, match="label_range: 3"):
        kept = list(make_dataset(tmp_path, num_classes=4, on_error="skip"))
    assert sorted(ids_of(kept)) == ["f0r0", "f0r1", "f0r2"] and all(item["labels"].shape == (4,) for item in kept)


def test_bad_records_propagate_through_dataloader_workers(tmp_path, fixtures_dir):
    shutil.copy(os.path.join(fixtures_dir, "corrupt_truncated.tfrecord"), tmp_path / "t.tfrecord")
    dataset = VideoIterableDataset(str(tmp_path), num_classes=4716, shuffle=False)
    loader = DataLoader(dataset, batch_size=2, num_workers=1, collate_fn=collate_videos)
    with pytest.raises(RecordError, match="truncated"):
        list(loader)


def test_world_resolution(monkeypatch):
    assert resolve_world(1, 4) == (1, 4)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert resolve_world(None, None) == (2, 3)
    with pytest.raises(ValueError):
        resolve_world(3, 3)
    with pytest.raises(ValueError):
        resolve_world(1, None)


def test_map_dataset_keeps_few_files_open(tmp_path, monkeypatch):
    import videopool.data.dataset as dataset_module

    monkeypatch.setattr(dataset_module, "_MAX_OPEN_FILES", 2)
    expected = write_shards(tmp_path, [1, 1, 1, 1, 1])
    mapped = VideoMapDataset(str(tmp_path), num_classes=NUM_CLASSES, schema=SCHEMA)
    assert [mapped[i]["id"] for i in (0, 3, 1, 4, 2, 0)] == [expected[i] for i in (0, 3, 1, 4, 2, 0)]
    assert len(mapped._handles) == 2
