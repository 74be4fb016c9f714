"""Bad data on the command line (docs/reliability.md, section 2): ``--on-bad-record {error,skip}`` and
``--max-bad-records`` on train, evaluate and predict, the messages and exit codes (2: the data or the options are
wrong), evaluation without labels, predictions from non-finite scores, and runs of 0 steps."""

import csv
import json
import os

import numpy as np
import pytest
import torch

from tests.bad_data import BAD_KINDS, write_damaged_shard
from tests.tiny_run import MODEL_FLAGS, NUM_CLASSES, TRAIN_FLAGS, tiny_videos
from videopool.cli.main import build_parser, main
from videopool.data import Video, write_videos
from videopool.data.errors import DEFAULT_MAX_BAD_RECORDS
from videopool.models import checkpoint as ckpt


@pytest.fixture(scope="module")
def damaged_val(tmp_path_factory):
    """5 labelled videos with one bad record of each kind among them; returns (path, [(index, offset, kind)])."""
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("damaged") / "validate-0.tfrecord"
    bad = write_damaged_shard(path, tiny_videos(rng, "v", 5, rng.normal(0, 0.8, (NUM_CLASSES, 1152))), NUM_CLASSES)
    return str(path), bad


def _train(data, out, *extra):
    return main(["train", *MODEL_FLAGS, "--train-data", data, "--out", str(out), *TRAIN_FLAGS,
                 "--num-classes", str(NUM_CLASSES), *extra])


def _one_error_line(capsys, command):
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"videopool {command}: error: "), captured.err
    return lines[0]


def test_train_skips_lists_and_summarises_or_stops(damaged_val, tmp_path, capsys):
    path, bad = damaged_val
    run = tmp_path / "run"
    # batches of 5: all the file's good videos (a last batch of 1 video cannot train the model's batch norm)
    assert _train(path, run, "--max-steps", "2", "--batch-size", "5", "--on-bad-record", "skip",
                  "--max-bad-records", "6") == 0
    err = capsys.readouterr().err
    assert (f"videopool train: skipped 6 bad record(s) (feature_size: 1, label_range: 1, no_frames: 1, "
            f"not_a_record: 1, payload_crc: 1, truncated: 1; 6 in --train-data, 0 in --val-data), listed in "
            f"{run / 'bad_records.jsonl'}") in err
    listed = [json.loads(line) for line in open(run / "bad_records.jsonl")]
    assert sorted((e["index"], e["offset"], e["kind"]) for e in listed) == sorted(bad)

    assert _train(path, tmp_path / "default", "--max-steps", "2") == 2  # error is the default
    line = _one_error_line(capsys, "train")
    assert f"{path}, record " in line and "byte offset" in line

    assert _train(path, tmp_path / "few", "--max-steps", "2", "--on-bad-record", "skip", "--max-bad-records", "1") == 2
    line = _one_error_line(capsys, "train")
    assert "more than --max-bad-records 1 allows" in line and str(tmp_path / "few" / "bad_records.jsonl") in line


@pytest.mark.parametrize("workers", ["0", "1"])
def test_evaluate_and_predict_skip_listing_each_record_on_stderr(trained_run, damaged_val, tmp_path, capsys,
                                                                 workers):
    path, bad = damaged_val
    options = ["--data", path, "--workers", workers, "--on-bad-record", "skip", "--max-bad-records", "10"]
    assert main(["evaluate", str(trained_run), *options, "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["num_videos"] == 5 and result["bad_records"] == len(BAD_KINDS)
    lines = captured.err.splitlines()
    for (index, offset, _), line in zip(bad, lines):  # in file order, each with file, record and offset
        assert line.startswith(f"videopool evaluate: skipped bad record: {path}, record {index}, "
                               f"byte offset {offset}: ")
    assert lines[-1] == ("videopool evaluate: skipped 6 bad record(s) (feature_size: 1, label_range: 1, "
                         "no_frames: 1, not_a_record: 1, payload_crc: 1, truncated: 1) of the 11 read")

    out = tmp_path / "predictions.csv"
    assert main(["predict", str(trained_run), *options, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "wrote top-20 predictions for 5 videos" in captured.out
    assert len(captured.err.splitlines()) == 7 and "videopool predict: skipped 6 bad record(s)" in captured.err
    assert [row[0] for row in csv.reader(open(out))][1:] == [f"v{i:03d}" for i in range(5)]


def test_evaluate_and_predict_stop_at_a_bad_record_by_default(trained_run, damaged_val, tmp_path, capsys):
    path, bad = damaged_val
    index, offset, _ = bad[0]
    assert main(["evaluate", str(trained_run), "--data", path, "--workers", "0"]) == 2
    assert f"{path}, record {index}, byte offset {offset}: payload is not" in _one_error_line(capsys, "evaluate")
    out = tmp_path / "p.csv"
    assert main(["predict", str(trained_run), "--data", path, "--workers", "0", "--out", str(out)]) == 2
    assert f"record {index}, byte offset {offset}" in _one_error_line(capsys, "predict")
    assert not out.exists()
    assert main(["evaluate", str(trained_run), "--data", path, "--workers", "0", "--on-bad-record", "skip"]) == 2
    assert "more than --max-bad-records 0.01 allows" in capsys.readouterr().err


def test_evaluate_without_labels_is_an_error_and_predict_reads_it(trained_run, tmp_path, capsys):
    test = tmp_path / "test-0.tfrecord"
    rng = np.random.default_rng(3)
    write_videos(test, [Video(f"t{i}", [], {"rgb": rng.uniform(-1, 1, (4, 1024)).astype(np.float32),
                                            "audio": rng.uniform(-1, 1, (4, 128)).astype(np.float32)})
                        for i in range(3)])
    assert main(["evaluate", str(trained_run), "--data", str(test), "--workers", "0"]) == 2
    assert "no video has labels (3 videos read): use `predict`" in _one_error_line(capsys, "evaluate")
    assert main(["predict", str(trained_run), "--data", str(test), "--workers", "0",
                 "--out", str(tmp_path / "p.csv")]) == 0


def test_predict_refuses_non_finite_scores(trained_run, tiny_data, tmp_path, capsys):
    source = str(trained_run / "best.safetensors")
    weights = ckpt.read_weights(source)
    name = [name for name, tensor in weights.items() if tensor.is_floating_point() and tensor.dim() == 2][-1]
    weights[name] = torch.full_like(weights[name], float("nan"))  # a diverged last layer
    diverged = str(tmp_path / "diverged.safetensors")
    ckpt.save_weights(diverged, weights, ckpt.read_info(source))
    out = tmp_path / "p.csv"
    data = ["--data", str(tiny_data / "validate-*.tfrecord"), "--workers", "0"]
    assert main(["predict", diverged, *data, "--out", str(out)]) == 2
    line = _one_error_line(capsys, "predict")
    assert "non-finite scores (NaN or inf) for 9 video(s) [v000, v001, v002, v003, v004, w000, w001, w002 ...]" in line
    assert not out.exists()
    assert main(["evaluate", diverged, *data]) == 2
    assert "non-finite scores" in _one_error_line(capsys, "evaluate")


def test_a_video_level_file_given_to_evaluate_says_what_it_is(trained_run, tmp_path, capsys):
    path = tmp_path / "video-level.tfrecord"
    write_videos(path, [Video("m", [1], {"mean_rgb": np.zeros(1024, np.float32),
                                         "mean_audio": np.zeros(128, np.float32)})])
    assert main(["evaluate", str(trained_run), "--data", str(path), "--workers", "0"]) == 2
    line = _one_error_line(capsys, "evaluate")
    assert f"--data: {path} is a video-level file (one vector per video: mean_rgb: 1024 floats" in line
    assert line.endswith("use data of the kind the model was trained on")


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "epochs must be at least 1, got 0: training would run 0 steps"),
    (["--epochs", "-1"], "epochs must be at least 1, got -1"),
    (["--max-steps", "0"], "max_steps must be at least 1, got 0"),
    (["--max-steps", "2", "--max-bad-records", "-1"], "max_bad_records must be a fraction"),
    (["--max-steps", "2", "--max-bad-records", "2.5"], "max_bad_records must be a fraction"),
])
def test_train_option_mistakes(tiny_data, tmp_path, capsys, flags, message):
    assert _train(str(tiny_data / "train-*.tfrecord"), tmp_path / "run", *flags) == 2
    assert message in _one_error_line(capsys, "train")
    assert not os.path.exists(tmp_path / "run" / "last.safetensors")


def test_empty_training_data_exits_2(tmp_path, capsys):
    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    assert _train(str(empty), tmp_path / "run", "--epochs", "1") == 2
    assert "holds no video to train on: training would run 0 steps" in _one_error_line(capsys, "train")


def test_the_flags_parse_and_document_their_default(capsys):
    parser = build_parser()
    for command in (["train", "--out", "r"], ["evaluate", "r", "--data", "d"], ["predict", "r", "--data", "d",
                                                                                   "--out", "o"]):
        args = parser.parse_args([*command, "--on-bad-record", "skip", "--max-bad-records", "0.5"])
        assert (args.on_bad_record, args.max_bad_records) == ("skip", 0.5)
        with pytest.raises(SystemExit) as raised:
            parser.parse_args([*command, "--on-bad-record", "ignore"])
        assert raised.value.code == 2 and "invalid choice: 'ignore'" in capsys.readouterr().err
    assert build_parser().parse_args(["evaluate", "r", "--data", "d"]).on_bad_record == "error"
    assert build_parser().parse_args(["train", "--out", "r"]).on_bad_record is None  # the run's config decides
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    assert f"default {DEFAULT_MAX_BAD_RECORDS:g} (1%)" in capsys.readouterr().out
