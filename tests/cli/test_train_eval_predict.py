"""``videopool train/evaluate/predict/export`` as a command line: argparse, exit codes (0 on success, 2 for a
user's mistake with one message naming the bad value, 1 when training stops on a non-finite loss), the printed
messages, and one end-to-end run through ``main``. What the commands compute is tested through the Python API
in tests/training/test_loop.py and tests/inference/test_evaluate_predict_export.py, on the same tiny data set
(``tiny_data``/``trained_run`` of tests/conftest.py)."""

import json
import os

import pytest

from tests.tiny_run import MODEL_FLAGS, NUM_CLASSES, TRAIN_FLAGS, train_glob, validate_glob
from videopool.cli.main import build_parser, main
from videopool.models.checkpoint import read_info, read_weights


def _train(data_dir, out, *extra):
    return main(["train", *MODEL_FLAGS, "--train-data", train_glob(data_dir), "--out", str(out), *TRAIN_FLAGS,
                 *extra])


def _error(capsys, command="train"):
    """The one line ``videopool COMMAND: error: ...`` that a failed command printed to stderr."""
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"videopool {command}: error: "), captured.err
    assert captured.out == ""
    return captured.err


def test_train_evaluate_predict_export_end_to_end(tiny_data, tmp_path, capsys):
    run, glob = tmp_path / "run", validate_glob(tiny_data)
    vocabulary = str(tiny_data / "vocabulary.csv")
    assert _train(tiny_data, run, "--vocabulary", vocabulary, "--max-steps", "4", "--val-data", glob,
                  "--eval-every", "2") == 0
    out = capsys.readouterr().out
    assert f"trained 4 steps (16 videos) -> {run}; validation gap=" in out
    assert {"config.yaml", "last.safetensors", "best.safetensors", "resume.pt", "metrics.jsonl"} <= set(
        os.listdir(run))

    assert main(["evaluate", str(run), "--data", glob, "--workers", "0"]) == 0
    assert f"{run / 'best.safetensors'} (step " in capsys.readouterr().out

    predictions = tmp_path / "predictions.csv"
    assert main(["predict", str(run), "--data", glob, "--out", str(predictions), "--top-k", "3", "--workers", "0",
                 "--with-names", "--vocabulary", vocabulary]) == 0
    assert f"wrote top-3 predictions for 9 videos to {predictions}" in capsys.readouterr().out
    assert len(open(predictions).read().splitlines()) == 1 + 9

    exported = tmp_path / "model.pt2"
    assert main(["export", str(run), "--out", str(exported)]) == 0
    out = capsys.readouterr().out
    assert f"(fp32, 6 classes) to {exported}" in out and "mask [B, N] bool -> probabilities [B, 6]" in out
    assert os.path.getsize(exported) > 0
    exported_bf16 = tmp_path / "model_bf16.pt2"
    assert main(["export", str(run), "--out", str(exported_bf16), "--precision", "bf16"]) == 0
    assert f"(bf16, 6 classes) to {exported_bf16}" in capsys.readouterr().out
    assert os.path.getsize(exported_bf16) > 0


def test_train_resume_continues_the_run(tiny_data, tmp_path, capsys):
    assert _train(tiny_data, tmp_path / "r", "--num-classes", str(NUM_CLASSES), "--max-steps", "2") == 0
    assert main(["train", "--out", str(tmp_path / "r"), "--resume", "--max-steps", "4", "--no-progress"]) == 0
    assert f"trained 4 steps (16 videos) -> {tmp_path / 'r'}" in capsys.readouterr().out
    assert read_info(str(tmp_path / "r" / "last.safetensors"))["step"] == 4


def test_evaluate_prints_json_a_table_and_plots(trained_run, tiny_data, tmp_path, capsys):
    from videopool.data import make_loader
    from videopool.inference import evaluate
    from videopool.models import load_model

    glob = validate_glob(tiny_data)
    capsys.readouterr()  # whatever the trained_run fixture printed
    assert main(["evaluate", str(trained_run), "--data", glob, "--json", "--batch-size", "4",
                 "--workers", "0", "--plots", str(tmp_path / "plots")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_videos"] == 9
    assert result["checkpoint"] == str(trained_run / "best.safetensors")
    assert result["step"] == read_info(str(trained_run / "best.safetensors"))["step"]
    model, _ = load_model(str(trained_run))
    expected = evaluate(model, make_loader([glob], num_classes=NUM_CLASSES, batch_size=4, strategy="all",
                                           num_frames=300, shuffle=False, workers=0))
    for key in ("gap", "hit_at_1", "perr", "map", "map_all_classes", "loss"):
        assert result[key] == pytest.approx(expected[key], abs=1e-9), key
    assert sorted(os.listdir(tmp_path / "plots")) == ["ap_vs_frequency.png", "precision_recall.png"]
    assert main(["evaluate", str(trained_run), "--data", glob, "--workers", "0"]) == 0
    table = capsys.readouterr().out
    assert "GAP@" in table and "G-TF1" in table and "G-TF2" in table


def test_evaluate_precision_flag_reaches_inference(trained_run, tiny_data, capsys):
    from videopool.data import make_loader
    from videopool.inference import evaluate
    from videopool.models import load_model

    glob = validate_glob(tiny_data)
    capsys.readouterr()
    model, _ = load_model(str(trained_run))
    for precision in ("fp32", "bf16"):
        assert main(["evaluate", str(trained_run), "--data", glob, "--json", "--workers", "0",
                     "--precision", precision]) == 0
        printed = json.loads(capsys.readouterr().out)
        expected = evaluate(model, make_loader([glob], num_classes=NUM_CLASSES, batch_size=256, strategy="all",
                                               num_frames=300, shuffle=False, workers=0), precision=precision)
        assert printed["loss"] == pytest.approx(expected["loss"], abs=1e-9), precision


def test_compile_flag_reaches_inference(trained_run, tiny_data, tmp_path, capsys, monkeypatch):
    """``--compile`` asks evaluate/predict to compile with every batch padded to 300 frames; what compiling
    computes is tested in tests/inference. The spies run the eager path, to keep this test fast."""
    import videopool.inference as inference

    calls = []

    def spy(real):
        def call(*args, **kwargs):
            calls.append((real.__name__, kwargs["compile"], kwargs["num_frames"]))
            return real(*args, **{**kwargs, "compile": False})
        return call

    monkeypatch.setattr(inference, "evaluate", spy(inference.evaluate))
    monkeypatch.setattr(inference, "write_predictions", spy(inference.write_predictions))
    glob = validate_glob(tiny_data)
    capsys.readouterr()
    assert main(["evaluate", str(trained_run), "--data", glob, "--json", "--workers", "0", "--batch-size", "4",
                 "--compile"]) == 0
    assert json.loads(capsys.readouterr().out)["num_videos"] == 9
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(trained_run), "--data", glob, "--out", str(out), "--workers", "0",
                 "--batch-size", "4", "--top-k", "3", "--compile"]) == 0
    assert "wrote top-3 predictions for 9 videos" in capsys.readouterr().out
    assert calls == [("evaluate", True, 300), ("write_predictions", True, 300)]


def test_inference_options_parse(tmp_path):
    parser = build_parser()
    for command in (["evaluate", "RUN", "--data", "d-*.tfrecord"],
                    ["predict", "RUN", "--data", "d-*.tfrecord", "--out", "p.csv"]):
        defaults = parser.parse_args(command)
        assert (defaults.sampling, defaults.num_frames, defaults.batch_size, defaults.precision, defaults.device,
                defaults.workers, defaults.compile, defaults.seed, defaults.top_k) == (
            "all", None, 256, "fp32", "auto", None, False, 0, 20)
        args = parser.parse_args([*command, "--compile", "--precision", "bf16", "--batch-size", "4", "--workers",
                                  "0", "--sampling", "uniform", "--num-frames", "30", "--top-k", "3"])
        assert (args.compile, args.precision, args.batch_size, args.workers, args.sampling, args.num_frames,
                args.top_k) == (True, "bf16", 4, 0, "uniform", 30, 3)
    assert parser.parse_args(["export", "RUN", "--out", "m.pt2"]).precision == "fp32"
    train = parser.parse_args(["train", "--out", "r", "--set", "a=1", "--set", "b.c=x", "--train-data", "x", "y"])
    assert train.set == ["a=1", "b.c=x"] and train.train_data == ["x", "y"] and not train.resume


@pytest.mark.parametrize("argv, bad", [
    (["evaluate", "RUN", "--data", "d", "--precision", "fp16"], "fp16"),
    (["predict", "RUN", "--data", "d", "--out", "p.csv", "--sampling", "every"], "every"),
    (["export", "RUN", "--out", "m.pt2", "--precision", "int8"], "int8"),
    (["train", "--out", "r", "--max-steps", "many"], "many"),
    (["predict", "RUN", "--data", "d"], "--out"),
])
def test_argparse_mistakes_exit_with_2_and_name_the_value(argv, bad, capsys):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    assert bad in capsys.readouterr().err


def test_no_command_prints_the_help_and_exits_with_2(capsys):
    assert main([]) == 2
    assert "train" in capsys.readouterr().out


def test_unknown_config_key_names_the_closest_key(tiny_data, tmp_path, capsys):
    assert _train(tiny_data, tmp_path / "r", "--num-classes", "6", "--max-steps", "1", "--set", "clip_mod=global") == 2
    message = _error(capsys)
    assert "did you mean 'clip_mode'" in message and "'clip_mod'" in message


def test_data_glob_matching_nothing(tiny_data, tmp_path, capsys):
    pattern = str(tiny_data / "nothing-*.tfrecord")
    code = main(["train", *MODEL_FLAGS, "--train-data", pattern, "--out", str(tmp_path / "r"),
                 "--num-classes", "6", "--max-steps", "1", "--workers", "0", "--no-progress"])
    message = _error(capsys)
    assert code == 2 and "matches no file" in message and pattern in message
    assert main(["evaluate", str(tmp_path / "missing-run"), "--data", validate_glob(tiny_data)]) == 2
    message = _error(capsys, "evaluate")
    assert "does not exist" in message and str(tmp_path / "missing-run") in message


def test_an_existing_run_is_not_overwritten(trained_run, tiny_data, capsys):
    capsys.readouterr()
    assert _train(tiny_data, trained_run, "--num-classes", "6", "--max-steps", "1") == 2
    message = _error(capsys)
    assert "pass --resume" in message and str(trained_run) in message


def test_resume_with_another_model_is_refused(trained_run, capsys):
    capsys.readouterr()
    assert main(["train", "--model", "netvlad_128_small", "--out", str(trained_run), "--resume", "--no-progress"]) == 2
    message = _error(capsys)
    assert "differs from the run's model" in message and "'netvlad_128_small'" in message


def test_vocabulary_that_does_not_cover_the_labels(tiny_data, tmp_path, capsys):
    vocabulary = str(tiny_data / "small_vocabulary.csv")
    code = _train(tiny_data, tmp_path / "r", "--vocabulary", vocabulary, "--max-steps", "2")
    assert code == 2
    message = _error(capsys)
    assert "label" in message and "does it cover the data's label ids?" in message
    assert f"--vocabulary {vocabulary}" in message


def test_predict_with_names_needs_a_vocabulary(trained_run, tiny_data, tmp_path, capsys):
    capsys.readouterr()
    assert main(["predict", str(trained_run), "--data", validate_glob(tiny_data), "--out", str(tmp_path / "p.csv"),
                 "--with-names"]) == 2
    assert "--with-names needs --vocabulary" in _error(capsys, "predict")
    assert not (tmp_path / "p.csv").exists()


def test_nan_loss_stops_with_step_and_batch_ids(tiny_data, tmp_path, capsys):
    code = _train(tiny_data, tmp_path / "r", "--num-classes", "6", "--max-steps", "8", "--checkpoint-every", "1",
                  "--lr", "1e30")
    assert code == 1
    message = _error(capsys)
    assert "at step" in message and "on the batch of videos [" in message
    assert "last good checkpoint" in message
    good = read_info(str(tmp_path / "r" / "last.safetensors"))
    weights = read_weights(str(tmp_path / "r" / "last.safetensors"))
    assert all(w.isfinite().all() for w in weights.values() if w.is_floating_point())
    assert f"step {good['step']}" in message
