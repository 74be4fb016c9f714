"""Shards read over HTTP from a server the test starts on 127.0.0.1 (tests/range_http.py, with Range support):
the same records and offsets as the local files, exact-once reading by DataLoader worker processes, an HTTP
pattern refused with one line (HTTP has no listing), and a training + evaluation run on http:// URLs."""

from __future__ import annotations

import pytest

pytest.importorskip("fsspec")
pytest.importorskip("aiohttp")

from tests.range_http import serve  # noqa: E402
from tests.tiny_run import MODEL_FLAGS, NUM_CLASSES, TRAIN_FLAGS  # noqa: E402
from videopool.data.io import expand_paths  # noqa: E402
from videopool.data.loader import make_loader  # noqa: E402
from videopool.data.tfrecord import index_records, read_records  # noqa: E402

SHARDS = ("train-0.tfrecord", "train-1.tfrecord")


@pytest.fixture(scope="module")
def base(tiny_data):
    with serve(tiny_data) as url:
        yield url


def test_records_and_offsets_equal_the_local_files(base, tiny_data):
    for name in SHARDS:
        local = [(r.index, r.offset, bytes(r.payload)) for r in read_records(str(tiny_data / name))]
        assert [(r.index, r.offset, bytes(r.payload)) for r in read_records(f"{base}/{name}")] == local
        assert index_records(f"{base}/{name}").tolist() == [offset for _, offset, _ in local]


def test_resume_at_a_byte_offset_requests_from_there(base, tiny_data):
    name = SHARDS[1]
    start = int(index_records(str(tiny_data / name))[6])
    local = [(r.index, r.offset, bytes(r.payload)) for r in read_records(str(tiny_data / name), start_offset=start,
                                                                        start_index=6)]
    over_http = [(r.index, r.offset, bytes(r.payload)) for r in read_records(f"{base}/{name}", start_offset=start,
                                                                            start_index=6)]
    assert over_http == local and [r[0] for r in local] == [6, 7]


def test_loader_workers_read_every_video_once(base, tiny_data):
    def ids(patterns, workers):
        loader = make_loader(patterns, num_classes=NUM_CLASSES, batch_size=3, strategy="all", num_frames=300,
                             shuffle=True, seed=2, workers=workers)
        return [video for batch in loader for video in batch.ids]

    over_http = ids([f"{base}/{name}" for name in SHARDS], workers=2)  # forked workers, each its own connection
    local = ids([str(tiny_data / name) for name in SHARDS], workers=2)
    assert over_http == local and len(over_http) == len(set(over_http)) == 16


def test_an_http_pattern_is_refused_with_the_fix(base, tmp_path, capsys):
    from videopool.cli.main import main

    with pytest.raises(ValueError, match="HTTP has no file listing"):
        expand_paths(f"{base}/train-*.tfrecord")
    assert main(["train", *MODEL_FLAGS, "--train-data", f"{base}/train-*.tfrecord", "--out", str(tmp_path / "r"),
                 *TRAIN_FLAGS, "--num-classes", str(NUM_CLASSES), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "HTTP has no file listing" in err and "each shard's URL" in err


def test_a_missing_shard_url_exits_2_naming_it(base, tmp_path, capsys):
    from videopool.cli.main import main

    assert main(["train", *MODEL_FLAGS, "--train-data", f"{base}/absent.tfrecord", "--out", str(tmp_path / "r"),
                 *TRAIN_FLAGS, "--num-classes", str(NUM_CLASSES), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and f"{base}/absent.tfrecord" in err


def test_train_and_evaluate_over_http(base, tmp_path, capsys):
    from videopool.cli.main import main

    run = tmp_path / "run"
    validate = [f"{base}/validate-0.tfrecord", f"{base}/validate-1.tfrecord"]
    assert main(["train", *MODEL_FLAGS, "--train-data", *[f"{base}/{name}" for name in SHARDS], "--out", str(run),
                 *TRAIN_FLAGS, "--vocabulary", f"{base}/vocabulary.csv", "--max-steps", "4",
                 "--val-data", *validate, "--eval-every", "2"]) == 0
    assert "trained 4 steps (16 videos)" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--data", *validate, "--workers", "0"]) == 0
    assert ": 9 videos" in capsys.readouterr().out


def test_map_dataset_random_reads_equal_local(base, tiny_data):
    from videopool.data.dataset import VideoMapDataset

    names = ("validate-0.tfrecord", "validate-1.tfrecord")
    local = VideoMapDataset([str(tiny_data / name) for name in names], num_classes=NUM_CLASSES)
    over_http = VideoMapDataset([f"{base}/{name}" for name in names], num_classes=NUM_CLASSES)
    assert len(over_http) == len(local) == 9
    for index in (7, 0, 5, 2):
        a, b = local[index], over_http[index]
        assert a["id"] == b["id"] and all((a["frames"][k] == b["frames"][k]).all() for k in a["frames"])
