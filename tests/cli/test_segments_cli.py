"""``videopool train-segments`` → ``evaluate-segments`` end to end on tiny demo segment splits, ``--resume``
equal to an uninterrupted run, and the user's mistakes (exit 2, one line)."""

from __future__ import annotations

import json

import pytest
import torch

from videopool.cli.main import main

NUM_CLASSES = 12
COMMON = ["--precision", "fp32", "--no-progress", "--batch-size", "8", "--set", "fc_size=8", "--seed", "5"]


@pytest.fixture(scope="module")
def segment_data(tmp_path_factory):
    """Tiny segment splits of the demo world (16-dim rgb, 8-dim audio) and an (untrained) video checkpoint."""
    from videopool.demo.segments import make_segment_splits
    from videopool.demo.world import DemoConfig
    from videopool.models import create_model, save_weights

    root = tmp_path_factory.mktemp("segments")
    config = DemoConfig(num_classes=NUM_CLASSES, rgb_size=16, audio_size=8, rgb_latent=8, audio_latent=4,
                        min_frames=50, max_frames=70)
    make_segment_splits(root, config=config, train_videos=10, validate_videos=6)
    torch.manual_seed(0)
    video = create_model("gated_netvlad_256_small", num_classes=NUM_CLASSES, cluster_size=2, **{"hidden.size": 8},
                         modalities={"rgb": 16, "audio": 8})
    save_weights(str(root / "video.safetensors"), video.state_dict(),
                 {"model_config": video.config.to_dict(), "num_classes": NUM_CLASSES})
    return root


def _train(root, out, *extra):
    return main(["train-segments", "--from", str(root / "video.safetensors"), "--data",
                 str(root / "segments-train-*.tfrecord"), "--out", str(out), *COMMON, *extra])


@pytest.mark.slow
def test_train_then_evaluate_segments(segment_data, tmp_path, capsys):
    from videopool.models import load_model
    from videopool.models.segment import ContextAwareSegmentClassifier

    out = tmp_path / "aware"
    code = _train(segment_data, out, "--model", "paper_context_aware", "--max-steps", "3",
                  "--val-data", str(segment_data / "segments-validate-*.tfrecord"))
    assert code == 0, capsys.readouterr().err
    assert "segment_map=" in capsys.readouterr().out
    model, info = load_model(str(out))
    assert isinstance(model, ContextAwareSegmentClassifier) and info["train_config"]["context"] == 3
    code = main(["evaluate-segments", str(out), "--data", str(segment_data / "segments-validate-*.tfrecord"),
                 "--json"])
    results = json.loads(capsys.readouterr().out)
    assert code == 0 and 0 <= results["segment_map"] <= 1
    assert results["num_classes"] == len(results["per_class_ap"]) > 0
    assert results["segment_map"] == pytest.approx(sum(results["per_class_ap"].values()) / results["num_classes"])
    assert set(results["video_level"]) >= {"gap", "map", "num_videos"}
    # the average of the context-ignoring and context-aware runs
    ignoring = tmp_path / "ignoring"
    assert _train(segment_data, ignoring, "--max-steps", "2") == 0
    capsys.readouterr()
    code = main(["evaluate-segments", str(ignoring), str(out), "--data",
                 str(segment_data / "segments-validate-*.tfrecord"), "--no-video-metrics"])
    shown = capsys.readouterr().out
    assert code == 0 and "segment mAP@100,000" in shown and " + " in shown


@pytest.mark.slow
def test_resume_equals_an_uninterrupted_run(segment_data, tmp_path):
    from videopool.models.checkpoint import read_weights

    whole, split = tmp_path / "whole", tmp_path / "split"
    args = ["--model", "ceshine_context_aware", "--checkpoint-every", "2", "--set", "video_frames=20"]
    assert _train(segment_data, whole, *args, "--max-steps", "4") == 0
    assert _train(segment_data, split, *args, "--max-steps", "2") == 0
    assert main(["train-segments", "--out", str(split), "--resume", "--max-steps", "4", "--no-progress"]) == 0
    a, b = read_weights(str(whole / "last.safetensors")), read_weights(str(split / "last.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_mistakes_are_one_line_exit_2(segment_data, tmp_path, capsys):
    cases = [
        (["train-segments", "--data", "x", "--out", str(tmp_path / "a")], "no --from given"),
        (["train-segments", "--from", str(segment_data / "video.safetensors"), "--out", str(tmp_path / "b"),
          "--data", "x", "--set", "fc_sise=3"], "did you mean 'fc_size'"),
        (["train-segments", "--from", str(segment_data / "video.safetensors"), "--out", str(tmp_path / "c"),
          "--data", "x", "--model", "paper_context_awake"], "paper_context_awake"),
        (["evaluate-segments", str(segment_data / "video.safetensors"), "--data", "x"], "holds a video-level model"),
        (["train-segments", "--from", str(tmp_path / "missing"), "--out", str(tmp_path / "d"), "--data", "x"],
         "missing"),
    ]
    for argv, expected in cases:
        assert _exit_code(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err, (argv, err)


def _exit_code(argv) -> int:
    """main's return value, or the status of the SystemExit argparse raises for a bad choice."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code
