"""Inference through the Python API on the session's ``trained_run`` (tests/conftest.py): ``evaluate``,
``write_predictions``, ``run_inference`` in fp32, bf16 and compiled, and ``export_model``/``load_exported``,
each checked against an obviously-correct unbatched computation or the eager model. The command line around
them is tested in tests/cli."""

import csv

import numpy as np
import pytest
import torch

from tests.tiny_run import NUM_CLASSES, validate_glob
from videopool.data import iter_videos, make_loader
from videopool.inference import (
    bf16_copy,
    evaluate,
    export_model,
    load_exported,
    read_class_names,
    run_inference,
    write_predictions,
)
from videopool.models import load_model


def _loader(tiny_data, batch_size):
    """What ``videopool evaluate/predict --sampling all`` builds: every real frame (up to 300), in file order."""
    return make_loader([validate_glob(tiny_data)], num_classes=NUM_CLASSES, batch_size=batch_size, strategy="all",
                       num_frames=300, shuffle=False, workers=0)


def _evaluate(run, tiny_data, batch_size=256, **options):
    model, info = load_model(str(run))
    return evaluate(model, _loader(tiny_data, batch_size), loss=info["train_config"]["loss"], **options)


def _direct_predictions(run, data_glob):
    """Predictions computed one video at a time without padding, the obviously-correct way."""
    model, _ = load_model(str(run / "best.safetensors"))
    ids, scores, labels = [], [], []
    with torch.no_grad():
        for video in iter_videos(data_glob):
            frames = {k: torch.as_tensor(np.asarray(v, dtype=np.float32))[None] for k, v in video.features.items()}
            scores.append(model(frames, None)[0])
            row = torch.zeros(NUM_CLASSES)
            row[video.labels] = 1
            ids.append(video.id)
            labels.append(row)
    return ids, torch.stack(scores), torch.stack(labels)


def test_a_run_directory_loads_its_best_checkpoint(trained_run):
    model, info = load_model(str(trained_run))
    assert info["path"] == str(trained_run / "best.safetensors")
    assert info["num_classes"] == NUM_CLASSES and not model.training


def test_evaluate_matches_an_unbatched_computation(trained_run, tiny_data):
    from videopool.metrics import gap_at_k, hit_at_one

    result = _evaluate(trained_run, tiny_data, batch_size=4)
    _, scores, labels = _direct_predictions(trained_run, validate_glob(tiny_data))
    assert result["num_videos"] == 9
    assert result["top_k"] == min(20, NUM_CLASSES)  # k is capped at V
    assert result["gap"] == pytest.approx(gap_at_k(scores, labels, 20), abs=1e-6)
    assert result["hit_at_1"] == pytest.approx(float(np.mean(hit_at_one(scores, labels))), abs=1e-6)


def test_evaluate_can_keep_its_evaluator_for_the_plots(trained_run, tiny_data):
    result = _evaluate(trained_run, tiny_data, batch_size=4, keep_evaluator=True)
    evaluator = result.pop("evaluator")
    assert evaluator.compute()["gap"] == pytest.approx(result["gap"], abs=1e-12)
    assert len(result["per_class_ap"]) == NUM_CLASSES


def test_run_inference_yields_every_video_once_in_file_order(trained_run, tiny_data):
    model, _ = load_model(str(trained_run))
    ids, scores, labels = _direct_predictions(trained_run, validate_glob(tiny_data))
    batches = list(run_inference(model, _loader(tiny_data, 4)))
    assert [len(batch_ids) for batch_ids, _, _ in batches] == [4, 4, 1]
    assert [i for batch_ids, _, _ in batches for i in batch_ids] == ids
    probabilities = torch.cat([p for _, p, _ in batches])
    assert probabilities.dtype == torch.float32 and probabilities.shape == (9, NUM_CLASSES)
    torch.testing.assert_close(probabilities, scores, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.cat([y for _, _, y in batches]).float(), labels)


def test_predict_writes_the_kaggle_csv(trained_run, tiny_data, tmp_path):
    glob = validate_glob(tiny_data)
    out = tmp_path / "predictions.csv"
    model, info = load_model(str(trained_run))
    names = read_class_names(str(tiny_data / "vocabulary.csv"), int(info["num_classes"]))
    assert write_predictions(model, _loader(tiny_data, 256), str(out), top_k=3, class_names=names) == 9
    rows = list(csv.reader(open(out)))
    assert rows[0][:2] == ["VideoId", "LabelConfidencePairs"]
    ids, scores, _ = _direct_predictions(trained_run, glob)
    by_id = {row[0]: row for row in rows[1:]}
    assert sorted(by_id) == sorted(ids)
    for video_id, row_scores in zip(ids, scores):
        tokens = by_id[video_id][1].split()
        classes = [int(t) for t in tokens[0::2]]
        assert classes == torch.topk(row_scores, 3).indices.tolist()
        assert [float(t) for t in tokens[1::2]] == pytest.approx(torch.topk(row_scores, 3).values.tolist(), rel=1e-5)
        assert by_id[video_id][2] == "|".join(f"thing {c}" for c in classes)


def test_class_names_must_cover_the_models_classes(tiny_data):
    with pytest.raises(ValueError, match="predicts 6 classes"):
        read_class_names(str(tiny_data / "small_vocabulary.csv"), NUM_CLASSES)


def test_bf16_inference_uses_bf16_weights_and_stays_close(trained_run, tiny_data):
    results = {precision: _evaluate(trained_run, tiny_data, precision=precision) for precision in ("fp32", "bf16")}
    assert results["bf16"]["loss"] == pytest.approx(results["fp32"]["loss"], rel=0.05)
    model, _ = load_model(str(trained_run))
    copy = bf16_copy(model)
    assert all(p.dtype == torch.bfloat16 for p in copy.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the original is left untouched
    _, probabilities, _ = next(iter(run_inference(model, _loader(tiny_data, 4), precision="bf16")))
    assert probabilities.dtype == torch.float32  # scores come back as fp32 whatever the precision
    with pytest.raises(ValueError, match="'fp32' or 'bf16'"):
        next(iter(run_inference(model, _loader(tiny_data, 4), precision="fp16")))


def test_compiled_inference_gives_the_eager_scores(trained_run, tiny_data, tmp_path):
    """compile=True pads every batch to a fixed frame count (and >= 2 videos) for one static graph; the scores and
    metrics must not change. Batch size 4 over 9 videos ends with a batch of 1, which is padded to 2."""
    model, info = load_model(str(trained_run))
    results, counts = {}, {}
    for compiled in (False, True):
        results[compiled] = evaluate(model, _loader(tiny_data, 4), loss=info["train_config"]["loss"],
                                     compile=compiled, num_frames=300)
        out = tmp_path / f"predictions{int(compiled)}.csv"
        counts[compiled] = write_predictions(model, _loader(tiny_data, 4), str(out), top_k=3, compile=compiled,
                                             num_frames=300)
    assert counts == {False: 9, True: 9}
    for key in ("gap", "hit_at_1", "perr", "map", "loss", "num_videos"):
        assert results[True][key] == pytest.approx(results[False][key], rel=1e-5), key
    eager, compiled = (list(csv.reader(open(tmp_path / f"predictions{n}.csv"))) for n in (0, 1))
    assert [row[0] for row in compiled] == [row[0] for row in eager]
    for row_eager, row_compiled in zip(eager[1:], compiled[1:]):
        assert row_compiled[1].split()[0::2] == row_eager[1].split()[0::2]
        assert [float(t) for t in row_compiled[1].split()[1::2]] == pytest.approx(
            [float(t) for t in row_eager[1].split()[1::2]], rel=1e-4)
    # and batch by batch: the padding to 300 frames and 2 videos never reaches the caller
    batches = list(run_inference(model, _loader(tiny_data, 4), compile=True, num_frames=300))
    assert [p.shape for _, p, _ in batches] == [(4, NUM_CLASSES), (4, NUM_CLASSES), (1, NUM_CLASSES)]
    eager_batches = list(run_inference(model, _loader(tiny_data, 4)))
    for (ids, p, _), (eager_ids, eager_p, _) in zip(batches, eager_batches):
        assert ids == eager_ids
        torch.testing.assert_close(p, eager_p, rtol=1e-4, atol=1e-6)


def test_export_writes_a_program_that_scores_like_the_checkpoint(trained_run, tmp_path):
    model, info = load_model(str(trained_run))
    out = tmp_path / "model.pt2"
    written = export_model(str(trained_run), str(out))
    program = torch.export.load(str(out)).module()  # plain torch, no videopool metadata needed
    _, metadata = load_exported(str(out))
    assert metadata == written
    assert metadata["num_classes"] == NUM_CLASSES and metadata["modalities"] == {"rgb": 1024, "audio": 128}
    assert metadata["model_config"] == info["model_config"] and metadata["precision"] == "fp32"
    assert metadata["source"] == info["path"] and metadata["step"] == info["step"]
    generator = torch.Generator().manual_seed(0)
    for batch, frames in ((1, 1), (5, 17), (3, 300)):  # batch size and frame count are free
        inputs = {name: torch.randn(batch, frames, size, generator=generator) for name, size in
                  metadata["modalities"].items()}
        mask = torch.ones(batch, frames, dtype=torch.bool)
        mask[0, frames // 2 + 1:] = False
        with torch.no_grad():
            torch.testing.assert_close(program(inputs, mask), model(inputs, mask), rtol=1e-5, atol=1e-6)

    bf16_out = tmp_path / "model_bf16.pt2"
    export_model(str(trained_run), str(bf16_out), precision="bf16")
    bf16_program, bf16_metadata = load_exported(str(bf16_out))
    assert bf16_metadata["precision"] == "bf16"
    inputs = {name: torch.randn(4, 9, size, generator=generator) for name, size in metadata["modalities"].items()}
    mask = torch.ones(4, 9, dtype=torch.bool)
    with torch.no_grad():
        scores = bf16_program({k: v.bfloat16() for k, v in inputs.items()}, mask).float()
        torch.testing.assert_close(scores, model(inputs, mask), rtol=0.05, atol=0.02)
    with pytest.raises(ValueError, match="'fp32' or 'bf16'"):
        export_model(str(trained_run), str(tmp_path / "model_fp16.pt2"), precision="fp16")


def test_export_refuses_recurrent_pooling_and_foreign_programs(tmp_path):
    from videopool.inference.export import ExportError, trace
    from videopool.models import create_model

    with pytest.raises(ExportError, match="LSTMPooling cannot be exported"):
        trace(create_model("lstm_2x1024_small", num_classes=4))
    foreign = tmp_path / "foreign.pt2"
    torch.export.save(torch.export.export(torch.nn.Linear(2, 2), (torch.zeros(3, 2),)), str(foreign))
    with pytest.raises(ValueError, match="not one written by videopool export"):
        load_exported(str(foreign))
