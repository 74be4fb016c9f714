"""Record layouts (videopool.data.layouts): the demo generator writes each built-in one, detection names it, the
reader maps its record keys onto its feature names, a YAML layout is strictly parsed, a per-feature quantization
range keeps standardised data that [-2, 2] clips, and a file of no known layout is described by its keys."""

import numpy as np
import pytest

from videopool.core.schema import ConfigError
from videopool.data import iter_videos, read_records
from videopool.data.codec import decode_record, encode_video
from videopool.data.inspect import format_report, inspect_shards
from videopool.data.layouts import LAYOUTS, detect_layout, layout_from_dict, load_layout, parse_features
from videopool.data.schema import FeatureSpec, Schema, dequantize
from videopool.data.video import Video
from videopool.demo.dataset import make_demo_data

SIZES = {"train_videos": 4, "validate_videos": 3, "test_videos": 0, "num_classes": 12, "progress": False}


@pytest.fixture(scope="module")
def demo_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    for name in LAYOUTS:
        make_demo_data(root / name, layout=name, **SIZES)
    return root


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_each_layout_is_written_detected_and_read_under_its_feature_names(demo_sets, name):
    layout = LAYOUTS[name]
    first = next(read_records(str(demo_sets / name / "validate-00000-of-00001.tfrecord")))
    assert detect_layout(first.payload).layout is layout
    videos = list(iter_videos(str(demo_sets / name / "validate-*.tfrecord"), schema=layout.schema))
    reference = list(iter_videos(str(demo_sets / "yt8m_frame" / "validate-*.tfrecord")))
    assert [v.id for v in videos] == [v.id for v in reference] and [v.labels for v in videos] == [
        v.labels for v in reference]
    for video, same in zip(videos, reference):
        assert list(video.features) == list(layout.schema.feature_names)
        for spec in layout.schema.features:
            source = same.features[spec.name.removeprefix("mean_")]
            want = source.mean(axis=0, keepdims=True, dtype=np.float64) if layout.schema.level == "video" else source
            np.testing.assert_allclose(video.features[spec.name], want, atol=1e-6)
    report = inspect_shards(str(demo_sets / name / "validate-*.tfrecord"))
    assert report.layout == name and report.num_videos == 3 and report.bad_records == 0
    assert "--features " in report.features_option


def test_legacy_video_id_records_are_detected_as_the_2017_variant():
    schema = Schema.yt8m_frame()
    legacy = Schema(schema.features, id_keys=("video_id",))
    video = Video("v1", [1], {"rgb": np.zeros((2, 1024), np.uint8), "audio": np.zeros((2, 128), np.uint8)})
    detection = detect_layout(encode_video(video, legacy))
    assert detection.layout is LAYOUTS["yt8m_frame"] and "video_id" in detection.variant


def test_a_file_of_no_known_layout_is_described_by_its_keys(tmp_path):
    from videopool.data import write_videos

    schema = Schema((FeatureSpec("accel", 3, "float"),), id_keys=("sample",))
    write_videos(tmp_path / "x.tfrecord", [Video("s1", [0], {"accel": np.ones((5, 3), np.float32)})], schema=schema)
    report = inspect_shards(str(tmp_path / "x.tfrecord"))
    assert report.layout is None
    text = format_report(report)
    assert "layout: none of yt8m_frame" in text and "accel (3 floats)" in text and "context keys" in text
    assert "sample" in text


def test_a_layout_file_maps_keys_and_ranges_and_is_strict(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("level: frame\nid_keys: [id]\nfeatures:\n"
                    "  - {name: mfcc.v1, key: audio/mfcc, size: 4, encoding: bytes, range: [-8, 8]}\n")
    layout = load_layout(path)
    spec = layout.schema.features[0]
    assert (layout.name, spec.name, spec.record_key, spec.min_value, spec.max_value) == (
        "mine", "mfcc.v1", "audio/mfcc", -8.0, 8.0)
    with pytest.raises(ConfigError, match="unknown key 'features\\[0\\].sise'; did you mean 'size'"):
        layout_from_dict({"features": [{"name": "x", "sise": 3}]}, "bad", "bad.yaml")
    with pytest.raises(ConfigError, match="range must be \\[min, max\\]"):
        layout_from_dict({"features": [{"name": "x", "size": 3, "range": [2, -2]}]}, "bad", "bad.yaml")
    with pytest.raises(ConfigError, match="level"):
        layout_from_dict({"level": "clip", "features": [{"name": "x", "size": 3}]}, "bad", "bad.yaml")


def test_a_per_feature_range_keeps_standardised_data_that_the_default_range_clips():
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((400, 4)).astype(np.float32) * 2.5  # many values beyond ±2
    wide, default = FeatureSpec("x", 4, "bytes", min_value=-8, max_value=8), FeatureSpec("x", 4, "bytes")
    for spec, bound in ((wide, 16 / 255 / 2 + 16 / 512), (default, None)):
        schema = Schema((spec,))
        payload = encode_video(Video("v", [0], {"x": frames}), schema)
        kept = decode_record(payload, schema, dequantize=False).features["x"]
        # codes stay uint8 only over [-2, 2], the one range the batch decoder knows
        assert kept.dtype == (np.uint8 if spec.default_range else np.float32)
        decoded = decode_record(payload, schema).features["x"]
        error = np.abs(decoded - np.clip(frames, spec.min_value, spec.max_value)).max()
        assert error <= 4 / 255 / 2 + 4 / 512 + 1e-6 if bound is None else error <= bound + 1e-6
    assert np.abs(decoded - frames).max() > 1  # the default range clipped them
    # the default decoder is unchanged: x = q * 4/255 + 4/512 - 2 in float32
    codes = np.arange(256, dtype=np.uint8)
    assert np.array_equal(default.dequantize(codes), dequantize(codes))
    assert np.array_equal(dequantize(codes), codes.astype(np.float32) * np.float32(4 / 255) + np.float32(4 / 512 - 2))


def test_features_option_parsing():
    assert parse_features("x:12, mfcc.v1:3") == {"x": 12, "mfcc.v1": 3}
    assert parse_features("RGB/feature/floats:1024") == {"RGB/feature/floats": 1024}
    for bad in ("x", "x:0", "x:-3", ":4", "x:4,x:5", ""):
        with pytest.raises(Exception, match="--features"):
            parse_features(bad)


def test_an_explicit_scale_and_offset_decode_codes_as_written_by_another_tool():
    layout = layout_from_dict({"features": [{"name": "depth", "size": 3, "scale": 0.05, "offset": -1.0}]},
                              "depth", "depth.yaml")
    spec = layout.schema.features[0]
    codes = np.array([[0, 1, 255]], dtype=np.uint8)
    payload = encode_video(Video("v", [0], {"depth": codes}), layout.schema)
    decoded = decode_record(payload, layout.schema, dequantize=False).features["depth"]
    np.testing.assert_array_equal(decoded, codes.astype(np.float32) * np.float32(0.05) + np.float32(-1.0))
    assert np.array_equal(spec.quantize(decoded), codes)  # the encoder inverts it
    assert "x = q * 0.05 + -1" in layout.describe()
    with pytest.raises(ConfigError, match="give both scale and offset"):
        layout_from_dict({"features": [{"name": "d", "size": 3, "scale": 0.05}]}, "d", "d.yaml")
    with pytest.raises(ConfigError, match="scale must be > 0"):
        layout_from_dict({"features": [{"name": "d", "size": 3, "scale": 0, "offset": 0}]}, "d", "d.yaml")
