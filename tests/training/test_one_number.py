"""One number per run (issue 15): the GAP a run reports from its validation during training is the GAP that
`videopool evaluate` prints for the same checkpoint, in bf16 training too (validation scores the float32 weights
the checkpoint stores, in float32, as evaluate does by default)."""

import json

import pytest

from tests.tiny_run import train_tiny, validate_glob
from videopool.cli.main import main


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_validation_and_evaluate_print_the_same_gap(precision, tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    # bf16_master_min_numel=0: the tiny model's matrices are held in bf16 like a full-size model's big ones.
    summary = train_tiny(tiny_data, out, max_steps=4, eval_every=4, val_data=[validate_glob(tiny_data)],
                         vocabulary=str(tiny_data / "vocabulary.csv"), precision=precision,
                         bf16_master_min_numel=0)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", validate_glob(tiny_data), "--workers", "0", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    for key in ("gap", "hit_at_1", "map"):
        assert summary["metrics"][key] == evaluated[key], key
