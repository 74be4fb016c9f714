"""``videopool export`` beyond the torch.export program: compact checkpoints (--storage) that evaluate/predict load
like any checkpoint, the byte budget (--max-model-bytes, exit 2 naming the excess and what fits, nothing written),
and the ONNX graph. The bad command lines of this command are rows of tests/cli/test_bad_inputs.py."""

import json
import os

import pytest
import torch

from tests.tiny_run import validate_glob
from videopool.cli.export import byte_count
from videopool.cli.main import main
from videopool.models import load_model
from videopool.models.storage import sizes_by_mode


def _evaluate(path, tiny_data, capsys):
    assert main(["evaluate", str(path), "--data", validate_glob(tiny_data), "--workers", "0", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_an_int8_checkpoint_evaluates_like_the_run(trained_run, tiny_data, tmp_path, capsys):
    out = tmp_path / "small.safetensors"
    # the tiny model's tensors are all below the default 65,536 values: quantise those of >= 1,000
    assert main(["export", str(trained_run), "--out", str(out), "--storage", "int8",
                 "--quantize-min-elements", "1000"]) == 0
    printed = capsys.readouterr().out
    assert f"with int8 storage to {out} ({os.path.getsize(out):,} bytes" in printed and "as 8-bit codes" in printed
    original, info = load_model(str(trained_run))
    small, small_info = load_model(str(out))
    assert small_info["storage"]["mode"] == "int8" and small_info["stored_from"] == info["path"]
    assert "hidden.weight" in small_info["storage"]["quantized"]
    assert os.path.getsize(out) < 0.75 * os.path.getsize(info["path"])  # small tensors and the header stay
    generator = torch.Generator().manual_seed(0)
    frames = {name: torch.randn(4, 6, size, generator=generator) for name, size in original.config.modalities.items()}
    with torch.no_grad():
        torch.testing.assert_close(small(frames, None), original(frames, None), rtol=0, atol=2e-2)
    base, compact = _evaluate(trained_run, tiny_data, capsys), _evaluate(out, tiny_data, capsys)
    assert compact["num_videos"] == base["num_videos"] == 9
    assert compact["gap"] == pytest.approx(base["gap"], abs=0.05)


def test_the_budget_refuses_with_exit_2_and_names_the_storage_that_fits(trained_run, tmp_path, capsys):
    model, info = load_model(str(trained_run))
    sizes = sizes_by_mode(model, info)
    out = tmp_path / "model.safetensors"
    budget = sizes["bf16"] + 1  # fp32 does not fit, bf16 does
    assert main(["export", str(trained_run), "--out", str(out), "--max-model-bytes", str(budget)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("videopool export: error: the fp32 checkpoint would be ")
    assert f"{sizes['fp32']:,} bytes, {sizes['fp32'] - budget:,} over --max-model-bytes {budget:,}" in err
    assert f"--storage bf16 ({sizes['bf16']:,} bytes)" in err and f"--storage fp16 ({sizes['fp16']:,} bytes)" in err
    assert "--storage int8" not in err  # all of the tiny model's tensors are below the int8 threshold: no smaller
    assert not out.exists()
    assert main(["export", str(trained_run), "--out", str(out), "--max-model-bytes", f"{budget:.6e}",
                 "--storage", "bf16"]) == 0
    assert os.path.getsize(out) == sizes["bf16"]


def test_the_program_and_the_graph_obey_the_budget_too(trained_run, tmp_path, capsys):
    out = tmp_path / "model.pt2"
    assert main(["export", str(trained_run), "--out", str(out), "--max-model-bytes", "1e4"]) == 2
    err = capsys.readouterr().err
    assert "the fp32 program would be " in err and "over --max-model-bytes 10,000; nothing was written" in err
    assert os.listdir(tmp_path) == []


def test_onnx_through_the_command_line(trained_run, tmp_path, capsys):
    pytest.importorskip("onnx", reason="ONNX export needs onnx: pip install -e '.[export]'")
    pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript: pip install -e '.[export]'")
    pytest.importorskip("onnxruntime", reason="the export's check runs onnxruntime: pip install -e '.[export]'")
    out = tmp_path / "model.onnx"
    assert main(["export", str(trained_run), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "as ONNX opset 18" in printed.out and "onnxruntime matches the model to" in printed.out
    assert "probabilities [batch, 6]" in printed.out and printed.err == ""
    assert os.path.getsize(out) > 0


def test_byte_counts():
    assert byte_count("1e9") == 10**9 and byte_count("995000000") == 995_000_000
    for bad in ("0", "-5", "1.5", "inf", "nan", "1GB"):
        with pytest.raises(Exception, match="bytes"):
            byte_count(bad)
