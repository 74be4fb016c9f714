"""Test-time resampling (``--test-time-samples R``): the mean of R separately seeded ``--sampling random`` runs,
computed in one pass."""

import pytest
import torch

from videopool.cli.main import build_parser, main
from videopool.cli.options import inference_loader
from videopool.inference import run_inference
from videopool.models import load_model
from tests.tiny_run import validate_glob


def _scores(run, data, *flags) -> dict[str, torch.Tensor]:
    args = build_parser().parse_args(["evaluate", str(run), "--data", data, *flags])
    model, info = load_model(str(run))
    loader, _ = inference_loader(args, info, torch.device("cpu"))
    return {i: p for ids, probs, _ in run_inference(model, loader) for i, p in zip(ids, probs)}


@pytest.mark.parametrize("workers,batch", [("0", "6"), ("2", "4")])
def test_r_samples_are_the_mean_of_r_separately_seeded_runs(trained_run, tiny_data, workers, batch):
    data, common = validate_glob(tiny_data), ["--sampling", "random", "--num-frames", "5", "--workers", workers]
    averaged = _scores(trained_run, data, *common, "--batch-size", batch, "--test-time-samples", "3", "--seed", "5")
    runs = [_scores(trained_run, data, *common, "--seed", str(seed)) for seed in (5, 6, 7)]  # the reference loop
    assert len(averaged) == 9 and averaged.keys() == runs[0].keys()
    for video, scores in averaged.items():
        expected = torch.stack([run[video] for run in runs]).mean(0)
        torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)
    assert any(not torch.allclose(runs[0][v], runs[1][v]) for v in averaged)  # the samples do differ


def test_one_sample_is_the_plain_run_and_the_seed_fixes_the_result(trained_run, tiny_data):
    data, random = validate_glob(tiny_data), ["--sampling", "random", "--workers", "0"]
    plain = _scores(trained_run, data, *random, "--seed", "2")
    one = _scores(trained_run, data, *random, "--seed", "2", "--test-time-samples", "1")
    assert all(torch.equal(plain[v], one[v]) for v in plain)
    first = _scores(trained_run, data, *random, "--seed", "2", "--test-time-samples", "4")
    again = _scores(trained_run, data, *random, "--seed", "2", "--test-time-samples", "4")
    other = _scores(trained_run, data, *random, "--seed", "3", "--test-time-samples", "4")
    assert all(torch.equal(first[v], again[v]) for v in first)
    assert any(not torch.allclose(first[v], other[v]) for v in first)


def test_commands_take_the_flag_and_refuse_it_with_deterministic_frames(trained_run, tiny_data, tmp_path, capsys):
    data = validate_glob(tiny_data)
    assert main(["evaluate", str(trained_run), "--data", data, "--sampling", "random", "--test-time-samples", "3",
                 "--json"]) == 0
    out = tmp_path / "p.csv"
    assert main(["predict", str(trained_run), "--data", data, "--out", str(out), "--sampling", "random",
                 "--test-time-samples", "2"]) == 0
    assert len(out.read_text().splitlines()) == 1 + 9
    capsys.readouterr()
    assert main(["evaluate", str(trained_run), "--data", data, "--test-time-samples", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--sampling all" in err and "--sampling random" in err
