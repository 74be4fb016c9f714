"""Quantization constants (spec §1.5) and schema presets."""

import numpy as np
import pytest
import torch

from videopool.data.schema import (YT8M_FRAME, YT8M_VIDEO, FeatureSpec, Schema, dequantize, quantize)


def test_dequantize_test_vectors():
    codes = np.array([0, 1, 127, 128, 255], dtype=np.uint8)
    expected = [-1.9921875, -1.9765012, -0.0000306, 0.0156556, 2.0078125]
    out = dequantize(codes)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=5e-7)
    assert out[0] == np.float32(-1.9921875) and out[4] == np.float32(2.0078125)  # exact in float32


def test_dequantize_is_tensorflows_float32_arithmetic_for_every_code():
    # TF graph: cast to float32, multiply by float32(4/255), add float32(4/512 - 2), each rounded
    # to float32. torch on a float32 tensor with Python scalars does the same two roundings.
    codes = np.arange(256, dtype=np.uint8)
    reference = torch.from_numpy(codes).to(torch.float32) * (4.0 / 255.0) + (4.0 / 512.0 - 2.0)
    assert np.array_equal(dequantize(codes), reference.numpy())
    # ... which is not the float64 formula rounded once: most codes differ in the last bit.
    float64 = (codes.astype(np.float64) * 4 / 255 + 4 / 512 - 2).astype(np.float32)
    assert (dequantize(codes) != float64).sum() > 100
    assert np.abs(dequantize(codes) - float64).max() < 2.5e-7


def test_dequantize_strided_view_and_out_buffer():
    rows = np.arange(3 * 10, dtype=np.uint8).reshape(3, 10)
    view = rows[:, 2:7]  # non-contiguous
    out = np.full((3, 5), np.nan, dtype=np.float32)
    result = dequantize(view, out=out)
    assert result is out
    assert np.array_equal(out, dequantize(np.ascontiguousarray(view)))


def test_quantize_round_trip_and_clipping():
    assert quantize(np.array([0.0]))[0] == 128  # 127.5 rounds to the even 128
    np.testing.assert_allclose(dequantize(quantize(np.array([0.0]))), [0.0156556], atol=5e-7)
    assert quantize(np.array([-5.0, -2.0, 2.0, 7.0])).tolist() == [0, 0, 255, 255]
    codes = np.arange(256, dtype=np.uint8)
    # Decoding adds +4/512 (less than half a step, 4/510), so re-quantizing gives the same codes.
    assert np.array_equal(quantize(dequantize(codes)), codes)
    assert quantize(np.zeros((2, 3))).dtype == np.uint8


def test_presets():
    assert [(s.name, s.size, s.encoding) for s in YT8M_FRAME.features] == [("rgb", 1024, "bytes"),
                                                                          ("audio", 128, "bytes")]
    assert [(s.name, s.size, s.encoding) for s in YT8M_VIDEO.features] == [("mean_rgb", 1024, "float"),
                                                                          ("mean_audio", 128, "float")]
    assert YT8M_FRAME.level == "frame" and YT8M_VIDEO.level == "video"
    assert Schema.yt8m_frame(audio=False).feature_names == ("rgb",)
    assert YT8M_FRAME.select("audio").feature_names == ("audio",)
    assert YT8M_FRAME.id_keys == ("id", "video_id")


def test_schema_validation_messages():
    with pytest.raises(ValueError, match="encoding"):
        FeatureSpec("rgb", 1024, "int")
    with pytest.raises(ValueError, match="positive"):
        FeatureSpec("rgb", 0)
    with pytest.raises(ValueError, match="duplicate"):
        Schema((FeatureSpec("rgb", 4), FeatureSpec("rgb", 4)))
    with pytest.raises(ValueError, match="level"):
        Schema((FeatureSpec("rgb", 4),), level="clip")
    with pytest.raises(KeyError, match="not in the schema"):
        YT8M_FRAME.feature("depth")
