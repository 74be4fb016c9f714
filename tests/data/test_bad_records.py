"""Bad data through ``make_loader`` (docs/reliability.md, section 2): stop at the first bad record or skip, count
and list every one (file, record, offset) from any loader worker, stop beyond ``max_bad_records``, and check every
shard against the model's features before reading, naming the odd shard and the option that reads it."""

import numpy as np
import pytest

from tests.bad_data import BAD_KINDS, write_damaged_shard
from tests.tiny_run import NUM_CLASSES, tiny_videos
from videopool.data import RecordError, Video, make_loader, write_videos
from videopool.data.errors import BadRecordLimitError, bad_records_allowed, check_max_bad_records
from videopool.data.preflight import ShardLayoutError, check_shards
from videopool.data.schema import FeatureSpec, Schema

FEATURES = {"rgb": 1024, "audio": 128}


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """``damaged.tfrecord``: 8 good videos and one bad record of each of the 6 kinds; returns (path, good ids, bad)."""
    root = tmp_path_factory.mktemp("damaged")
    rng = np.random.default_rng(0)
    videos = tiny_videos(rng, "g", 8, rng.normal(0, 0.8, (NUM_CLASSES, 1152)))
    path = str(root / "damaged.tfrecord")
    bad = write_damaged_shard(path, videos, NUM_CLASSES)
    return path, [video.id for video in videos], bad


def _loader(patterns, workers, **options):
    return make_loader(patterns, num_classes=NUM_CLASSES, batch_size=3, strategy="all", num_frames=300,
                       shuffle=False, workers=workers, features=FEATURES, **options)


@pytest.mark.parametrize("workers", [0, 1])
def test_error_stops_at_the_first_bad_record_with_its_location(damaged, workers):
    path, _, bad = damaged
    with pytest.raises(RecordError) as raised:
        list(_loader(path, workers))
    index, offset, kind = bad[0]
    # from a loader worker too: the error is the reader's, not a DataLoader traceback wrapped in a string
    assert type(raised.value) is RecordError
    error = raised.value
    assert (error.path, error.index, error.offset, error.kind) == (path, index, offset, kind)


@pytest.mark.parametrize("workers", [0, 1])
def test_skip_leaves_out_counts_and_lists_every_bad_record(damaged, workers):
    path, good_ids, bad = damaged
    skipped = []
    loader = _loader(path, workers, on_bad_record="skip", max_bad_records=len(BAD_KINDS), on_skip=skipped.append)
    batches = list(loader)
    assert [video_id for batch in batches for video_id in batch.ids] == good_ids
    assert [len(batch) for batch in batches] == [3, 3, 2]  # the batches of the good videos alone
    assert [(e.path, e.index, e.offset, e.kind) for e in skipped] == [(path, *entry) for entry in bad]
    assert loader.skipped.count == len(BAD_KINDS) and loader.skipped.counts_by_kind == dict.fromkeys(BAD_KINDS, 1)
    assert loader.records_read == len(good_ids) + len(BAD_KINDS)
    again = []  # a second pass skips the same records again and forms the same batches
    loader.on_skip = again.append
    assert [batch.ids for batch in loader] == [batch.ids for batch in batches]
    assert [(e.index, e.kind) for e in again] == [(e.index, e.kind) for e in skipped]


def test_bad_records_after_the_last_full_batch_still_arrive(damaged, tmp_path):
    path, good_ids, bad = damaged
    skipped = []
    loader = make_loader(path, num_classes=NUM_CLASSES, batch_size=4, strategy="all", num_frames=300, shuffle=False,
                         workers=0, features=FEATURES, on_bad_record="skip", max_bad_records=10,
                         on_skip=skipped.append)
    assert [len(batch) for batch in loader] == [4, 4]  # no empty batch for the truncated tail
    assert skipped[-1].kind == "truncated" and len(skipped) == len(bad)


def test_shuffled_skips_are_deterministic(damaged):
    path, good_ids, _ = damaged

    def one_pass(workers):
        skipped = []
        loader = make_loader(path, num_classes=NUM_CLASSES, batch_size=3, strategy="random", num_frames=4,
                             shuffle=True, seed=5, epoch=2, workers=workers, features=FEATURES,
                             on_bad_record="skip", max_bad_records=10, on_skip=skipped.append)
        batches = [(batch.ids, batch.mask.sum().item()) for batch in loader]
        return batches, [(e.index, e.kind) for e in skipped]

    first = one_pass(0)
    assert sorted(i for ids, _ in first[0] for i in ids) == sorted(good_ids)
    assert one_pass(0) == first and one_pass(1) == first


@pytest.mark.parametrize("workers", [0, 1])
def test_the_default_threshold_stops_a_pass_with_too_many_bad_records(damaged, workers):
    path, _, bad = damaged
    skipped = []
    with pytest.raises(BadRecordLimitError) as raised:
        list(_loader(path, workers, on_bad_record="skip", on_skip=skipped.append, bad_record_log="RUN/bad.jsonl"))
    # default 1% of the records read, at least one: the second bad record among the first 5 read stops it
    assert raised.value.count == 2 and raised.value.read == 5 and len(skipped) == 2
    message = str(raised.value)
    assert "2 of the 5 records read are bad" in message and "--max-bad-records 0.01" in message
    assert "RUN/bad.jsonl" in message and f"record {bad[0][0]}, byte offset {bad[0][1]}" in message


def test_a_count_threshold_allows_exactly_that_many(damaged):
    path, good_ids, _ = damaged
    assert len([b for b in _loader(path, 0, on_bad_record="skip", max_bad_records=6)]) == 3
    with pytest.raises(BadRecordLimitError, match="6 of the 14 records read are bad"):
        list(_loader(path, 0, on_bad_record="skip", max_bad_records=5))
    with pytest.raises(BadRecordLimitError, match="2 of the 5 records read"):  # checked batch by batch
        list(_loader(path, 0, on_bad_record="skip", max_bad_records=0))


def test_max_bad_records_values():
    assert [bad_records_allowed(0.01, n) for n in (0, 99, 100, 250)] == [1, 1, 1, 2]
    assert bad_records_allowed(0.5, 10) == 5 and bad_records_allowed(3, 10) == 3 and bad_records_allowed(0, 10) == 0
    assert check_max_bad_records(float("inf")) == float("inf")
    for wrong in (-1, 1.5, float("nan"), "1", True):
        with pytest.raises(ValueError, match="max_bad_records must be a fraction"):
            check_max_bad_records(wrong)
    with pytest.raises(ValueError, match="max_bad_records"):
        make_loader("x", num_classes=2, batch_size=1, strategy="all", num_frames=1, shuffle=False, max_bad_records=-1)
    with pytest.raises(ValueError, match="on_error must be 'error' or 'skip'"):
        make_loader("x", num_classes=2, batch_size=1, strategy="all", num_frames=1, shuffle=False,
                    on_bad_record="ignore")


# -- shards of another kind -----------------------------------------------------------------------------------

def _videos(prefix, features, count=3):
    rng = np.random.default_rng(1)
    return [Video(f"{prefix}{i}", [1], {name: rng.uniform(-2, 2, shape).astype(np.float32)
                                        for name, shape in features.items()}) for i in range(count)]


def _write(path, features, schema=None):
    write_videos(path, _videos(path.stem, features), schema=schema)
    return str(path)


def test_a_shard_of_another_feature_size_is_reported_against_itself(tmp_path):
    # the odd shard sorts first: a schema inferred from the first file would blame every record of the good one
    odd = _write(tmp_path / "a-odd.tfrecord", {"rgb": (4, 512), "audio": (4, 128)},
                 Schema((FeatureSpec("rgb", 512), FeatureSpec("audio", 128))))
    good = _write(tmp_path / "b-good.tfrecord", {"rgb": (4, 1024), "audio": (4, 128)})
    with pytest.raises(ShardLayoutError) as raised:
        _loader(str(tmp_path / "*.tfrecord"), 0)
    message = str(raised.value)
    assert raised.value.path == odd and good not in message
    assert f"{odd} has 'rgb' of 512 bytes per frame, the model expects 1024 (found 512, expected 1024)" in message
    assert "(files unlike the model's data: 1 of the 2 in data)" in message
    assert "remove it from data, or, if all your data is like it, train with --set modalities.rgb=512" in message


def test_only_odd_shard_suggests_the_override(tmp_path):
    odd = _write(tmp_path / "odd.tfrecord", {"rgb": (4, 512), "audio": (4, 128)},
                 Schema((FeatureSpec("rgb", 512), FeatureSpec("audio", 128))))
    with pytest.raises(ShardLayoutError, match=r"; train with --set modalities.rgb=512 to read it$"):
        check_shards(odd, features=FEATURES, what="--train-data")
    with pytest.raises(ShardLayoutError, match="use data of the kind the model was trained on"):
        check_shards(odd, features=FEATURES, what="--data", trainable=False)
    # the override it names reads the shard
    assert check_shards(odd, features={"rgb": 512, "audio": 128}).schema.feature("rgb").size == 512


@pytest.mark.parametrize("features, kind, option", [
    ({"mean_rgb": (1024,), "mean_audio": (128,)},
     "is a video-level file (one vector per video: mean_rgb: 1024 floats, mean_audio: 128 floats)",
     "a model with modalities {mean_rgb: 1024, mean_audio: 128} reads this kind of file"),
    ({"rgb": (5, 1024)}, "is a frame-level file with only rgb (rgb: 1024 bytes per frame)",
     "a model with modalities {rgb: 1024} reads this kind of file"),
])
def test_a_shard_of_another_kind_says_which_kind_and_which_option_reads_it(tmp_path, features, kind, option):
    good = _write(tmp_path / "a-good.tfrecord", {"rgb": (4, 1024), "audio": (4, 128)})
    other = _write(tmp_path / "b-other.tfrecord", features)
    with pytest.raises(ShardLayoutError) as raised:
        _loader([good, other], 0)
    message = str(raised.value)
    assert raised.value.path == other and f"data: {other} {kind}" in message
    assert "but the model reads rgb (1024), audio (128)" in message and message.endswith(option)
    assert good not in message
    # a trainer words it with the options of its own model (tests/training/test_bad_data.py checks they work)
    with pytest.raises(ShardLayoutError, match=r"; READ WITH \{.*\}$"):
        check_shards([good, other], features=FEATURES, reads_with=lambda found: f"READ WITH {found}")


def test_the_check_samples_labels_and_tolerates_a_corrupt_first_record_when_skipping(damaged, tmp_path):
    path, _, bad = damaged
    labelled = _write(tmp_path / "labelled.tfrecord", {"rgb": (4, 1024), "audio": (4, 128)})  # labels [1]
    check = check_shards([path, labelled], features=FEATURES, num_classes=NUM_CLASSES)
    assert (check.checked_records, check.labelled_records) == (2, 2)
    with pytest.raises(RecordError, match=r"label id\(s\) \[1\] outside \[0, 1\)") as raised:
        check_shards(labelled, features=FEATURES, num_classes=1)  # before any training step reads it
    assert (raised.value.path, raised.value.index, raised.value.kind) == (labelled, 0, "label_range")
    unlabelled = tmp_path / "test.tfrecord"
    write_videos(unlabelled, [Video("t", [], {"rgb": np.zeros((2, 1024), np.uint8),
                                              "audio": np.zeros((2, 128), np.uint8)})])
    assert check_shards(str(unlabelled), features=FEATURES).labelled_records == 0
    # a shard whose first record is garbage: an error under "error", a bad record to skip under "skip"
    garbage_first = tmp_path / "garbage-first.tfrecord"
    with open(path, "rb") as source, open(garbage_first, "wb") as target:
        data = source.read()
        target.write(data[bad[0][1]:bad[1][1]] + data[:bad[0][1]])  # record 1 (garbage), then record 0
    with pytest.raises(RecordError, match="not a tf.train"):
        check_shards(str(garbage_first), features=FEATURES)
    check = check_shards(str(garbage_first), features=FEATURES, on_error="skip")
    assert check.checked_records == 1 and [e.kind for e in check.bad_records] == ["not_a_record"]
