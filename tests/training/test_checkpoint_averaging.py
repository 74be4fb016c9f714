"""Checkpoint averaging (``videopool average-checkpoints``, :mod:`videopool.training.averaging`): the mean of the
weights, batch-norm statistics recomputed on training data, and the command's output and refusals."""

import itertools
import shutil

import torch

from videopool.cli.main import main
from videopool.models import create_model, load_model
from videopool.models.checkpoint import read_info, read_weights, save_weights, step_checkpoints
from videopool.training.averaging import average_checkpoints, bn_loader
from tests.tiny_run import MODEL, MODEL_SETTINGS, NUM_CLASSES, train_glob, validate_glob


def _steps(run) -> list[str]:
    return [path for _, path in step_checkpoints(str(run / "checkpoints"))]


def test_averaging_copies_of_one_checkpoint_returns_its_weights(trained_run, tmp_path):
    source = _steps(trained_run)[-1]
    copies = []
    for i in range(3):
        copies.append(str(tmp_path / f"copy{i}.safetensors"))
        shutil.copyfile(source, copies[-1])
    model, info = average_checkpoints(copies, batch_norm="averaged")
    original = read_weights(source)
    assert model.state_dict().keys() == original.keys()
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())
    assert [a["step"] for a in info["averaged_from"]] == [read_info(source)["step"]] * 3


def test_two_hand_made_checkpoints_average_to_their_exact_mean(trained_run, tmp_path):
    info = read_info(_steps(trained_run)[-1])
    generator = torch.Generator().manual_seed(0)
    states = []
    for i, step in enumerate((10, 20)):
        model = create_model(MODEL, num_classes=NUM_CLASSES, **MODEL_SETTINGS)
        state = {k: (torch.randn(v.shape, generator=generator) * (i + 1) if v.is_floating_point() else v + step)
                 for k, v in model.state_dict().items()}
        states.append(state)
        save_weights(str(tmp_path / f"step{step}.safetensors"), state, {**info, "step": step})
    averaged, _ = average_checkpoints([str(tmp_path / "step10.safetensors"), str(tmp_path / "step20.safetensors")],
                                      batch_norm="averaged")
    for name, value in averaged.state_dict().items():
        a, b = states[0][name], states[1][name]
        expected = ((a.double() + b.double()) / 2).float() if a.is_floating_point() else b  # integers: the newest
        assert torch.equal(value, expected), name


def test_recomputed_batch_norm_holds_the_statistics_of_the_training_batches(trained_run, tiny_data):
    paths = _steps(trained_run)[-2:]
    data = [train_glob(tiny_data)]
    averaged, info = average_checkpoints(paths, batch_norm="averaged")
    recomputed, info = average_checkpoints(paths, batch_norm="recompute", bn_batches=2, bn_data=data)
    assert info["batch_norm"] == "recomputed on 2 training batches"
    # direct computation for the input BN of each modality: it sees the frames divided by the L2 norm of the
    # concatenated modalities; statistics over the real frames, unbiased variance, averaged over the batches
    means, variances = {"rgb": [], "audio": []}, {"rgb": [], "audio": []}
    for batch in itertools.islice(bn_loader(info, data), 2):
        norm = torch.sqrt(sum(x.pow(2).sum(-1, keepdim=True) for x in batch.frames.values()).clamp_min(1e-12))
        for name, x in batch.frames.items():
            rows = (x / norm)[batch.mask].double()
            means[name].append(rows.mean(0))
            variances[name].append(rows.var(0, unbiased=True))
    for name in ("rgb", "audio"):
        norm = recomputed.poolings[name].input_norm
        torch.testing.assert_close(norm.running_mean.double(), torch.stack(means[name]).mean(0), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(norm.running_var.double(), torch.stack(variances[name]).mean(0), rtol=1e-4,
                                   atol=1e-6)
        assert not torch.allclose(norm.running_mean, averaged.poolings[name].input_norm.running_mean)
    same = [k for k, _ in recomputed.named_parameters()]  # the weights themselves are untouched by the recomputation
    assert all(torch.equal(recomputed.state_dict()[k], averaged.state_dict()[k]) for k in same)


def test_command_writes_a_checkpoint_that_evaluate_loads_and_reports_each_gap(trained_run, tiny_data, tmp_path,
                                                                             capsys):
    out = tmp_path / "avg"
    assert main(["average-checkpoints", str(trained_run), "--last", "2", "--out", str(out), "--bn-batches", "2",
                 "--bn-data", train_glob(tiny_data), "--data", validate_glob(tiny_data), "--workers", "0"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["checkpoint", "GAP@20"] and printed[-2].startswith("average of 2")
    steps = [read_info(p)["step"] for p in _steps(trained_run)[-2:]]
    assert [f"(step {s})" in line for s, line in zip(steps, printed[1:3])] == [True, True]
    model, info = load_model(str(out))  # best.safetensors, as evaluate/predict/export load it
    assert info["step"] == steps[-1] and len(info["averaged_from"]) == 2
    assert abs(info["metrics"]["gap"] - float(printed[-2].split()[-1])) < 1e-6
    assert main(["evaluate", str(out), "--data", validate_glob(tiny_data), "--json"]) == 0


def test_command_refuses_mixed_models_and_missing_checkpoints(trained_run, tmp_path, capsys):
    info = read_info(_steps(trained_run)[-1])
    other = create_model(MODEL, num_classes=NUM_CLASSES, cluster_size=4, **{"hidden.size": 8})
    save_weights(str(tmp_path / "other.safetensors"), other.state_dict(),
                 {**info, "model_config": other.config.to_dict()})
    cases = [
        (["--checkpoints", _steps(trained_run)[-1], str(tmp_path / "other.safetensors")], "different models"),
        ([str(trained_run), "--last", "9"], "keeps only 3 step checkpoint(s)"),
        ([str(trained_run), "--checkpoints", _steps(trained_run)[-1]], "not both"),
        ([str(trained_run), "--last", "2", "--out", str(trained_run)], "holds a training run"),
    ]
    for flags, message in cases:
        if "--out" not in flags:
            flags = flags + ["--out", str(tmp_path / "x.safetensors")]
        assert main(["average-checkpoints", *flags, "--bn", "averaged"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "x.safetensors").exists()
