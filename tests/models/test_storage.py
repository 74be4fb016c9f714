"""Compact checkpoints (videopool.models.storage): each storage mode's round trip within its stated error, the
exact size estimate that the byte budget uses, the full-size gated NetVLAD's sizes from shapes alone, and the
refusals (over budget, values a mode cannot hold, damaged files)."""

import json
import os

import numpy as np
import pytest
import torch
from safetensors import safe_open

from videopool.core.errors import UserError
from videopool.models import create_model, load_model, save_weights
from videopool.models.checkpoint import read_weights
from videopool.models.storage import (
    MIN_QUANTIZED_ELEMENTS,
    STORAGE_MODES,
    ModelTooLargeError,
    checkpoint_bytes,
    dequantize_rows,
    quantize_rows,
    save_model,
    sizes_by_mode,
)

NUM_CLASSES = 6
# hidden.weight is [(1024·4 + 128·2), 32] = 139,264 values: above the int8 threshold; the rest below it.
SETTINGS = {"cluster_size": 4, "hidden.size": 32}


def _model(seed=0):
    torch.manual_seed(seed)
    model = create_model("gated_netvlad_256_small", num_classes=NUM_CLASSES, **SETTINGS).eval()
    with torch.no_grad():  # batch-norm statistics that are not the defaults, so that keeping them is checked
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_()
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    return model


def _info(model):
    return {"model_config": model.config.to_dict(), "num_classes": NUM_CLASSES, "step": 3}


def _inputs(model, videos=3, frames=5):
    generator = torch.Generator().manual_seed(1)
    inputs = {name: torch.randn(videos, frames, size, generator=generator)
              for name, size in model.config.modalities.items()}
    mask = torch.ones(videos, frames, dtype=torch.bool)
    mask[1, 2:] = False
    return inputs, mask


@pytest.mark.parametrize("mode", STORAGE_MODES)
def test_each_mode_round_trips_within_its_error_bound(mode, tmp_path):
    model = _model()
    path = str(tmp_path / f"{mode}.safetensors")
    written = save_model(path, model, _info(model), mode)
    loaded, info = load_model(path)
    assert info["storage"]["mode"] == mode and written["storage"] == info["storage"]
    original, restored = model.state_dict(), loaded.state_dict()
    parameters = {name for name, _ in model.named_parameters()}
    quantized = set(info["storage"].get("quantized", ()))
    assert quantized == ({"hidden.weight"} if mode == "int8" else set())
    for name, x in original.items():
        y = restored[name]
        assert y.dtype == x.dtype and y.shape == x.shape
        if name not in parameters or mode == "fp32" or (mode == "int8" and name not in quantized):
            assert torch.equal(x, y), name  # buffers (BN statistics) and small tensors: exact
        elif mode == "bf16":
            assert ((y - x).abs() <= 2.0**-8 * x.abs()).all(), name
        elif mode == "fp16":  # normal fp16 range: 11 significant bits
            normal = x.abs() >= 2.0**-14
            assert ((y - x).abs()[normal] <= 2.0**-11 * x.abs()[normal]).all(), name
            assert ((y - x).abs()[~normal] <= 2.0**-25).all(), name
        else:
            rows = x.reshape(-1, x.shape[-1])
            half_step = (rows.amax(1) - rows.amin(1)) / 255 / 2
            error = (y - x).reshape(rows.shape).abs()
            assert (error <= half_step[:, None] * (1 + 1e-5) + 1e-7).all(), name
    inputs, mask = _inputs(model)
    with torch.no_grad():
        expected, got = model(inputs, mask), loaded(inputs, mask)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, rtol=0, atol={"fp32": 0, "bf16": 2e-2, "fp16": 2e-3, "int8": 2e-2}[mode])


def test_the_stored_tensors_are_the_compact_ones(tmp_path):
    model = _model()
    for mode, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("int8", torch.uint8)):
        path = str(tmp_path / f"{mode}.safetensors")
        save_model(path, model, _info(model), mode)
        with safe_open(path, framework="pt") as f:
            stored = {name: f.get_tensor(name) for name in f.keys()}
            assert json.loads(f.metadata()["videopool"])["storage"]["mode"] == mode
        assert stored["hidden.weight"].dtype == dtype
        assert stored["gating.batch_norm.running_var"].dtype == torch.float32  # a BN statistic stays fp32
        if mode == "int8":
            rows = stored["hidden.weight"].shape[0]
            assert stored["hidden.weight@scale"].shape == stored["hidden.weight@offset"].shape == (rows,)
            assert stored["gating.weight"].dtype == torch.float32  # 256·... < 65,536 values: not quantised
        else:
            assert stored["gating.weight"].dtype == dtype


def test_quantize_rows_matches_the_formula_row_by_row():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40, 300, generator=generator) * torch.linspace(0.01, 5, 40)[:, None]
    x[7] = 0.25  # a constant row
    codes, scale, offset = quantize_rows(x)
    assert codes.dtype == torch.uint8 and codes.shape == x.shape
    data = x.double().numpy()
    for r, row in enumerate(data):
        low, high = row.min(), row.max()
        assert offset[r].item() == pytest.approx(low, abs=1e-7)
        assert scale[r].item() == pytest.approx((high - low) / 255, rel=1e-6)
        if high == low:
            assert scale[r] == 0 and (codes[r] == 0).all()
            continue
        exact = (row - low) / ((high - low) / 255)
        expected = np.clip(np.round(exact), 0, 255)
        borderline = np.abs(exact - np.floor(exact) - 0.5) < 1e-3  # fp32 vs fp64 may round a near-tie apart
        assert np.array_equal(codes[r].numpy()[~borderline], expected[~borderline])
        assert codes[r].min() == 0 and codes[r].max() == 255
    restored = dequantize_rows(codes, scale, offset)
    assert torch.equal(restored[7], x[7])
    assert ((restored - x).abs() <= scale[:, None] / 2 * (1 + 1e-5) + 1e-7).all()


def test_the_size_estimate_is_the_file_size(tmp_path):
    model = _model()
    sizes = sizes_by_mode(model, _info(model))
    for mode in STORAGE_MODES:
        path = str(tmp_path / f"{mode}.safetensors")
        written = save_model(path, model, _info(model), mode)
        assert os.path.getsize(path) == sizes[mode] == written["bytes"], mode
    assert sizes["int8"] < sizes["bf16"] < sizes["fp32"]
    # and for a model that was never materialised: same configuration on the meta device
    meta = create_model("gated_netvlad_256_small", num_classes=NUM_CLASSES, device="meta", **SETTINGS)
    assert sizes_by_mode(meta, _info(meta)) == sizes


def test_full_size_gated_netvlad_fits_the_challenge_budget_in_bf16_and_about_330_mb_in_int8():
    """Seed 002 §3.4: the 2018 challenge's 1 GB limit. The full model (V = 3,862) is built on the meta device."""
    model = create_model("gated_netvlad_256", device="meta")
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters == 321_528_380
    info = {"model_config": model.config.to_dict(), "num_classes": 3862}
    sizes = sizes_by_mode(model, info)
    # The arithmetic: 4 and 2 bytes per value, plus the buffers (BN statistics, kept fp32) and the header.
    values = sum(t.numel() for t in model.state_dict().values())
    assert 4 * values < sizes["fp32"] < 4 * values + 200_000
    assert sizes["fp32"] > 10**9  # fp32 does not fit 1 GB
    assert 2 * parameters < sizes["bf16"] < 10**9 and sizes["fp16"] < 10**9
    # int8: one byte per value of the large matrices + 8 bytes per row of them + the small tensors in fp32
    assert parameters < sizes["int8"] < 330 * 10**6
    with pytest.raises(ModelTooLargeError, match=r"the fp32 checkpoint would be 1,286,\d{3},\d{3} bytes, "
                                                  r"286,\d{3},\d{3} over --max-model-bytes 1,000,000,000; "
                                                  r".*--storage bf16 \(643,"):
        save_model("/nonexistent/never-written.safetensors", model, info, "fp32", max_bytes=10**9)


def test_the_budget_refuses_before_writing_and_names_what_fits(tmp_path):
    model = _model()
    sizes = sizes_by_mode(model, _info(model))
    path = tmp_path / "model.safetensors"
    with pytest.raises(ModelTooLargeError) as err:
        save_model(str(path), model, _info(model), "bf16", max_bytes=sizes["int8"] + 10)
    message = str(err.value)
    excess = sizes["bf16"] - sizes["int8"] - 10
    assert f"the bf16 checkpoint would be {sizes['bf16']:,} bytes, {excess:,} over" in message
    assert f"--storage int8 ({sizes['int8']:,} bytes) fits" in message
    assert not path.exists() and os.listdir(tmp_path) == []
    with pytest.raises(ModelTooLargeError, match=f"no storage mode fits: the smallest, int8, is {sizes['int8']:,}"):
        save_model(str(path), model, _info(model), "int8", max_bytes=sizes["int8"] - 1)
    save_model(str(path), model, _info(model), "int8", max_bytes=sizes["int8"])  # exactly at the budget: written
    assert os.path.getsize(path) == sizes["int8"]


def test_values_a_mode_cannot_hold_are_refused(tmp_path):
    model = _model()
    with torch.no_grad():
        model.hidden.weight[0, 0] = 1e5
    with pytest.raises(UserError, match=r"'hidden.weight' has values up to 1e\+05, beyond float16's range.*bf16"):
        save_model(str(tmp_path / "a.safetensors"), model, _info(model), "fp16")
    save_model(str(tmp_path / "b.safetensors"), model, _info(model), "bf16")  # bf16 has fp32's range
    with torch.no_grad():
        model.hidden.weight[0, 0] = float("nan")
    for mode in ("bf16", "int8"):
        with pytest.raises(UserError, match="'hidden.weight' holds NaN or infinite values"):
            save_model(str(tmp_path / "c.safetensors"), model, _info(model), mode)
    assert sorted(os.listdir(tmp_path)) == ["b.safetensors"]


def test_a_smaller_threshold_quantises_more_tensors(tmp_path):
    model = _model()
    path = str(tmp_path / "m.safetensors")
    written = save_model(path, model, _info(model), "int8", min_elements=1000)
    assert written["storage"]["quantized"] == [  # every parameter of >= 1,000 values, no buffer
        "gating.weight", "hidden.weight", "poolings.rgb.input_norm.bias", "poolings.rgb.input_norm.weight",
        "poolings.rgb.pooling.cluster_weights", "poolings.rgb.pooling.cluster_weights2"]
    assert written["storage"]["min_elements"] == 1000 and MIN_QUANTIZED_ELEMENTS == 65_536
    assert checkpoint_bytes(model, _info(model), "int8", 1000) == os.path.getsize(path)
    loaded, _ = load_model(path)
    inputs, mask = _inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs, mask), model(inputs, mask), rtol=0, atol=5e-2)


def test_training_checkpoints_read_as_before_and_damaged_compact_ones_are_named(tmp_path):
    model = _model()
    plain = str(tmp_path / "plain.safetensors")
    save_weights(plain, model.state_dict(), _info(model))
    state = read_weights(plain)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    # an int8 file whose scales went missing: the codes alone must not become numbers
    path = str(tmp_path / "int8.safetensors")
    save_model(path, model, _info(model), "int8")
    from videopool.models.checkpoint import METADATA_KEY, write_safetensors

    with safe_open(path, framework="pt") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys() if name != "hidden.weight@scale"}
        metadata = f.metadata()
    damaged = str(tmp_path / "damaged.safetensors")
    with open(damaged, "wb") as handle:
        write_safetensors(handle, tensors, {METADATA_KEY: metadata[METADATA_KEY]})
    with pytest.raises(ValueError, match="lists 'hidden.weight' as 8-bit but does not hold its uint8 codes"):
        read_weights(damaged)
    newer = json.loads(metadata[METADATA_KEY])
    newer["storage"]["mode"] = "int4"
    with open(damaged, "wb") as handle:
        write_safetensors(handle, tensors, {METADATA_KEY: json.dumps(newer)})
    with pytest.raises(ValueError, match="storage mode 'int4', which this version of videopool cannot read"):
        read_weights(damaged)
