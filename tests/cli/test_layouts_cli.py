"""Each record layout trains and evaluates through the command line on demo data written in it, a user's
features train with one option (--features), and a model/data feature mismatch stops before training with
one line naming both sides and the option that fixes it."""

import pytest

from videopool.cli.main import main
from videopool.data.layouts import LAYOUTS
from videopool.demo.dataset import make_demo_data

FAST = ["--epochs", "1", "--batch-size", "8", "--workers", "0", "--no-progress", "--set", "num_frames=10",
        "--set", "lr_decay_examples=1000"]
MODELS = {"yt8m_frame": ["--model", "netvlad_128_small"],
          "yt8m_video": ["--model", "avgpool_logistic", "--features", "mean_rgb:1024,mean_audio:128"],
          "audioset": ["--model", "mfb_avgpool_audio_only_small"],
          "mediapipe": ["--model", "netvlad_128_small"]}


def _data(root, layout):
    make_demo_data(root, layout=layout, train_videos=16, validate_videos=8, test_videos=0, num_classes=12,
                   progress=False)
    return [str(root / "train-*.tfrecord"), str(root / "validate-*.tfrecord"), str(root / "vocabulary.csv")]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_layout_trains_and_evaluates(tmp_path, capsys, layout):
    train, validate, vocabulary = _data(tmp_path / "data", layout)
    run = tmp_path / "run"
    flags = [] if layout.startswith("yt8m") else ["--layout", layout]  # detected names, or the layout's
    assert main(["train", *MODELS[layout], *flags, "--train-data", train, "--val-data", validate,
                 "--vocabulary", vocabulary, "--out", str(run), *FAST]) == 0
    assert "validation gap=" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--data", validate, "--workers", "0", "--json"]) == 0  # layout from the run
    assert '"gap"' in capsys.readouterr().out


def test_custom_features_train_with_one_option_and_a_mismatch_names_both_sides(tmp_path, capsys):
    layout = tmp_path / "sensor.yaml"
    layout.write_text("features:\n  - {name: mfcc.v1, size: 6, encoding: bytes, range: [-4, 4]}\n")
    train, validate, vocabulary = _data(tmp_path / "data", str(layout))
    assert main(["inspect", train]) == 0
    assert "--features mfcc.v1:6" in capsys.readouterr().out
    common = ["--train-data", train, "--val-data", validate, "--vocabulary", vocabulary, *FAST]
    assert main(["train", "--model", "gated_netvlad_256_small", "--out", str(tmp_path / "bad"), *common]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "rgb (1024), audio (128)" in err and "--features mfcc.v1:6" in err
    assert main(["train", "--model", "gated_netvlad_256_small", "--layout", str(layout), "--features", "mfcc.v1:6",
                 "--out", str(tmp_path / "run"), *common]) == 0
    captured = capsys.readouterr()
    assert "validation gap=" in captured.out
    assert "l2_normalize_frames is on for frames of 6 values" in captured.err  # a 6-d frame keeps only its direction
    assert main(["train", "--model", "gated_netvlad_256_small", "--layout", str(layout), "--features", "mfcc.v1:6",
                 "--set", "l2_normalize_frames=false", "--out", str(tmp_path / "off"), *common]) == 0
    assert "l2_normalize_frames" not in capsys.readouterr().err


def test_models_small_lists_the_twins_at_the_demo_classes(capsys):
    import json

    assert main(["models", "--small", "--json", "--pattern", "mfb_netvlad_concat*"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == ["mfb_netvlad_concat_small"] and rows[0]["num_classes"] == 256
    assert main(["models", "--json", "--pattern", "mfb_netvlad_concat_small", "--num-classes", "3862"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["num_classes"] == 3862


@pytest.mark.parametrize("argv, message", [
    (["inspect", "--layout", "yt8m_frme", "{data}"], "unknown layout 'yt8m_frme'; did you mean 'yt8m_frame'?"),
    (["inspect", "--layout", "{tmp}/none.yaml", "{data}"], "layout file '{tmp}/none.yaml' does not exist"),
    (["train", "--model", "netvlad_128_small", "--layout", "bogus", "--train-data", "{data}", "--num-classes", "12",
      "--out", "{tmp}/run"], "unknown layout 'bogus'"),
    (["train", "--model", "netvlad_128_small", "--features", "x", "--train-data", "{data}", "--num-classes", "12",
      "--out", "{tmp}/run"], "--features 'x': 'x' is not NAME:SIZE"),
    (["train", "--model", "netvlad_128_small", "--set", "modalities.x=12", "--train-data", "{data}",
      "--num-classes", "12", "--out", "{tmp}/run"], "modalities.x=12 would add feature 'x' beside"),
    (["make-demo-data", "{tmp}/demo", "--layout", "bogus"], "unknown layout 'bogus'"),
    (["models", "--small", "--no-small"], "--small lists only the *_small twins"),
])
def test_bad_layout_and_feature_options_exit_2_with_one_line(tmp_path, capsys, argv, message):
    data = str(tmp_path / "missing-*.tfrecord")
    argv = [arg.format(tmp=tmp_path, data=data) for arg in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message.format(tmp=tmp_path) in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "demo").exists()


def test_a_file_in_a_renaming_layout_read_without_it_names_the_layout(tmp_path, capsys):
    train, validate, vocabulary = _data(tmp_path / "data", "audioset")
    assert main(["train", "--model", "mfb_avgpool_audio_only_small", "--train-data", train, "--vocabulary",
                 vocabulary, "--out", str(tmp_path / "run"), *FAST]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "has no 'audio'" in err and err.rstrip().endswith("--layout audioset")
