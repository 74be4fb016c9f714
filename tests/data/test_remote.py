"""Shards behind fsspec URLs (videopool/data/remote.py), on fsspec's in-memory filesystem: listing, reading,
exact-once sharding over workers x ranks, resume positions and bad-record locations are the same as for the
same bytes in local files; a training + evaluation run reads its data and vocabulary from ``memory://``; a
missing backend or an unknown protocol is a one-line user error."""

from __future__ import annotations

import os
import uuid

import pytest

fsspec = pytest.importorskip("fsspec")

from tests.tiny_run import MODEL_FLAGS, NUM_CLASSES, TRAIN_FLAGS  # noqa: E402
from videopool.core.errors import UserError  # noqa: E402
from videopool.data import remote  # noqa: E402
from videopool.data.dataset import VideoIterableDataset, VideoMapDataset  # noqa: E402
from videopool.data.errors import ErrorPolicy, RecordError  # noqa: E402
from videopool.data.io import expand_paths, iter_videos  # noqa: E402
from videopool.data.tfrecord import index_records, read_record_at, read_records  # noqa: E402


def upload(folder, names=None) -> str:
    """Copy the files of a local folder into a fresh ``memory://`` folder; returns its URL."""
    base = f"memory://videopool-test-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("memory")
    for name in names or sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as file:
            fs.pipe(base[len("memory://"):] + "/" + name, file.read())
    return base


@pytest.fixture
def mem(tiny_data):
    base = upload(tiny_data)
    yield base
    fsspec.filesystem("memory").rm(base[len("memory://"):], recursive=True)


def test_globs_directories_and_files_list_like_local_ones(mem, tiny_data):
    listed = expand_paths(f"{mem}/train-*.tfrecord")
    assert [os.path.basename(path) for path in listed] == ["train-0.tfrecord", "train-1.tfrecord"]
    assert all(path.startswith("memory://") for path in listed)
    assert [os.path.basename(p) for p in expand_paths(mem)] == [os.path.basename(p) for p in expand_paths(
        str(tiny_data))]
    assert expand_paths(f"{mem}/validate-1.tfrecord") == [f"{mem}/validate-1.tfrecord"]
    with pytest.raises(FileNotFoundError, match="no files match the pattern 'memory://"):
        expand_paths(f"{mem}/nothing-*.tfrecord")
    with pytest.raises(FileNotFoundError, match="no such file"):
        expand_paths(f"{mem}/absent.tfrecord")


def test_file_urls_take_the_local_path(tiny_data):
    assert not remote.is_url(f"file://{tiny_data}") and remote.is_url("memory://x") and not remote.is_url("a/b")
    assert expand_paths(f"file://{tiny_data}/train-*.tfrecord") == expand_paths(str(tiny_data / "train-*.tfrecord"))


def test_records_offsets_and_payloads_equal_the_local_reader(mem, tiny_data):
    for name in ("train-0.tfrecord", "validate-1.tfrecord"):
        local = [(r.index, r.offset, bytes(r.payload)) for r in read_records(str(tiny_data / name))]
        remote_records = [(r.index, r.offset, bytes(r.payload)) for r in read_records(f"{mem}/{name}")]
        assert remote_records == local and len(local) > 3
        offsets = index_records(f"{mem}/{name}")
        assert offsets.tolist() == index_records(str(tiny_data / name)).tolist() == [r[1] for r in local]
        assert read_record_at(f"{mem}/{name}", int(offsets[2]), index=2) == local[2][2]


def test_resume_from_a_byte_offset_reads_the_same_records(mem, tiny_data):
    name = "train-1.tfrecord"
    offsets = index_records(str(tiny_data / name))
    start = int(offsets[5])
    local = [(r.index, r.offset, bytes(r.payload)) for r in read_records(str(tiny_data / name), start_offset=start,
                                                                        start_index=5)]
    remote_records = [(r.index, r.offset, bytes(r.payload)) for r in read_records(f"{mem}/{name}",
                                                                                 start_offset=start, start_index=5)]
    assert remote_records == local and [r[0] for r in local] == [5, 6, 7]


@pytest.mark.parametrize("world_size,workers", [(1, 1), (2, 1), (1, 3), (2, 3)])
def test_exact_once_sharding_over_workers_and_ranks_matches_local(mem, tiny_data, world_size, workers):
    def ids(pattern):
        split = {}
        for rank in range(world_size):
            dataset = VideoIterableDataset(pattern, num_classes=NUM_CLASSES, rank=rank, world_size=world_size,
                                           seed=4, epoch=1, shuffle_buffer=3)
            for worker in range(workers):
                split[(rank, worker)] = [item["id"] for item in dataset.iter_worker(worker, workers)]
        return split

    local, remote_split = ids(str(tiny_data / "train-*.tfrecord")), ids(f"{mem}/train-*.tfrecord")
    assert remote_split == local
    everything = sorted(video for part in remote_split.values() for video in part)
    assert everything == sorted(set(everything)) and len(everything) == 16  # each video exactly once


def test_map_dataset_reads_the_same_items(mem, tiny_data):
    local = VideoMapDataset(str(tiny_data / "validate-*.tfrecord"), num_classes=NUM_CLASSES)
    over_url = VideoMapDataset(f"{mem}/validate-*.tfrecord", num_classes=NUM_CLASSES)
    assert len(over_url) == len(local) == 9
    for index in (0, 4, 8, 3):
        a, b = local[index], over_url[index]
        assert a["id"] == b["id"] and all((a["frames"][k] == b["frames"][k]).all() for k in a["frames"])


def _damaged(tmp_path, tiny_data) -> bytes:
    """train-0 with a flipped payload byte in record 3 and its last record cut short."""
    data = bytearray((tiny_data / "train-0.tfrecord").read_bytes())
    offsets = index_records(str(tiny_data / "train-0.tfrecord"))
    data[int(offsets[3]) + 40] ^= 0xFF
    del data[-10:]
    (tmp_path / "damaged.tfrecord").write_bytes(bytes(data))
    return bytes(data)


def test_bad_records_are_reported_with_the_same_record_and_offset(mem, tiny_data, tmp_path):
    _damaged(tmp_path, tiny_data)
    url = upload(tmp_path, ["damaged.tfrecord"]) + "/damaged.tfrecord"
    found = {}
    for path in (str(tmp_path / "damaged.tfrecord"), url):
        policy = ErrorPolicy("skip")
        kept = [record.index for record in read_records(path, errors=policy)]
        found[path] = kept, [(e.kind, e.index, e.offset) for e in policy.examples]
        assert all(e.path == path for e in policy.examples)  # the URL names the file in the report
    local, over_url = found.values()
    assert over_url == local
    assert local[1] == [("payload_crc", 3, int(index_records(str(tiny_data / "train-0.tfrecord"))[3])),
                        ("truncated", 7, int(index_records(str(tiny_data / "train-0.tfrecord"))[7]))]
    with pytest.raises(RecordError, match=r"memory://.*damaged\.tfrecord.*record 3"):
        list(iter_videos(url))


def test_missing_backend_and_unknown_protocol_are_user_errors():
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="pip install gcsfs"):
            expand_paths("gs://some-bucket/train*.tfrecord")
    with pytest.raises(UserError, match="nosuchproto"):
        expand_paths("nosuchproto://x/train.tfrecord")


def test_train_evaluate_predict_read_memory_urls(mem, tmp_path, capsys):
    from videopool.cli.main import main

    run = tmp_path / "run"
    assert main(["train", *MODEL_FLAGS, "--train-data", f"{mem}/train-*.tfrecord", "--out", str(run), *TRAIN_FLAGS,
                 "--vocabulary", f"{mem}/vocabulary.csv", "--max-steps", "4",
                 "--val-data", f"{mem}/validate-*.tfrecord", "--eval-every", "2"]) == 0
    assert "trained 4 steps (16 videos)" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--data", f"{mem}/validate-*.tfrecord", "--workers", "0"]) == 0
    assert ": 9 videos" in capsys.readouterr().out
    out = tmp_path / "p.csv"
    assert main(["predict", str(run), "--data", f"{mem}/validate-*.tfrecord", "--out", str(out), "--workers",
                 "0"]) == 0
    assert len(out.read_text().splitlines()) == 1 + 9


def test_a_data_url_that_names_nothing_exits_2(mem, tmp_path, capsys):
    from videopool.cli.main import main

    assert main(["train", *MODEL_FLAGS, "--train-data", f"{mem}/nothing-*.tfrecord", "--out", str(tmp_path / "r"),
                 *TRAIN_FLAGS, "--num-classes", str(NUM_CLASSES), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "memory://" in err and "nothing-*" in err


def test_predictions_and_an_export_go_to_a_remote_out(mem, trained_run, capsys):
    from videopool.cli.main import main

    fs = fsspec.filesystem("memory")
    assert main(["predict", str(trained_run), "--data", f"{mem}/validate-*.tfrecord", "--out", f"{mem}/out/p.csv",
                 "--top-k", "2", "--workers", "0"]) == 0
    lines = fs.cat(f"{mem}/out/p.csv").decode().splitlines()
    assert len(lines) == 1 + 9
    assert main(["export", str(trained_run), "--out", f"{mem}/out/model.pt2"]) == 0
    assert f"to {mem}/out/model.pt2 (" in capsys.readouterr().out
    names = fs.ls(f"{mem}/out", detail=False)
    assert sorted(os.path.basename(n) for n in names) == ["model.pt2", "p.csv"]  # no staged leftovers
    assert fs.size(f"{mem}/out/model.pt2") > 0


def test_a_failed_write_leaves_nothing_at_the_url(mem):
    from videopool.core.files import atomic_write

    url = f"{mem}/out/half.csv"
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_write(url, "w") as handle:
            handle.write("partial")
            raise RuntimeError("interrupted")
    assert not fsspec.filesystem("memory").exists(url)
    with atomic_write(url, "w") as handle:
        handle.write("whole")
    assert fsspec.filesystem("memory").cat(url) == b"whole"


def test_a_training_run_directory_must_be_local(mem, tmp_path, capsys):
    from videopool.cli.main import main

    assert main(["train", *MODEL_FLAGS, "--train-data", f"{mem}/train-*.tfrecord", "--out", f"{mem}/runs/x",
                 *TRAIN_FLAGS, "--num-classes", str(NUM_CLASSES), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "must be local" in err
    assert not os.path.exists("memory:")  # no local folder named after the URL


def test_an_http_out_is_refused_before_any_work(trained_run, tiny_data, capsys):
    from videopool.cli.main import main

    with pytest.raises(SystemExit) as stopped:  # argparse's own exit, at parse time: no inference ran
        main(["predict", str(trained_run), "--data", str(tiny_data / "validate-*.tfrecord"), "--out",
              "https://example.invalid/p.csv", "--workers", "0"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "argument --out: 'https://example.invalid/p.csv': cannot write over HTTP" in err.splitlines()[-1]


def test_a_config_file_may_name_url_data(mem, tmp_path, capsys):
    from videopool.cli.main import main

    config = tmp_path / "remote.yaml"
    config.write_text(f"train_data: ['{mem}/train-*.tfrecord']\nval_data: ['{mem}/validate-0.tfrecord']\n"
                      f"vocabulary: {mem}/vocabulary.csv\n")
    assert main(["train", *MODEL_FLAGS, "--config", str(config), "--out", str(tmp_path / "run"), *TRAIN_FLAGS,
                 "--max-steps", "2", "--eval-every", "2"]) == 0
    out = capsys.readouterr().out
    assert "trained 2 steps" in out and "validation gap=" in out


def test_inspect_reads_a_url_like_the_local_file(mem, tiny_data, capsys):
    from videopool.data.inspect import inspect_shards

    remote_report = inspect_shards([f"{mem}/train-0.tfrecord"])
    local_report = inspect_shards([str(tiny_data / "train-0.tfrecord")])
    assert remote_report.total_bytes == local_report.total_bytes == os.path.getsize(tiny_data / "train-0.tfrecord")
    assert [f["records"] for f in remote_report.files] == [f["records"] for f in local_report.files] != [0]
