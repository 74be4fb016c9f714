"""What a record holds: feature names, sizes and encodings, plus the 8-bit (de)quantization.

YouTube-8M stores each frame feature as ``D`` bytes, one uint8 code per dimension, over the
range [-2, 2]:

* encoder (feature extractor): ``q = round((clip(x, -2, 2) + 2) * 255 / 4)``
* decoder (starter code ``Dequantize``): ``x = q * 4/255 + 4/512 - 2``

The decoder is not the encoder's exact inverse: it adds a constant ``+4/512`` to every
dimension. :func:`dequantize` keeps that bias, computed in float32 exactly as TensorFlow does,
so features are bit-identical to the TensorFlow readers'.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

MIN_QUANTIZED_VALUE = -2.0
MAX_QUANTIZED_VALUE = 2.0
# float32 constants of the TensorFlow graph: feat * scale + bias, with Python-float scale and bias.
DEQUANTIZE_SCALE = np.float32((MAX_QUANTIZED_VALUE - MIN_QUANTIZED_VALUE) / 255.0)
DEQUANTIZE_BIAS = np.float32((MAX_QUANTIZED_VALUE - MIN_QUANTIZED_VALUE) / 512.0 + MIN_QUANTIZED_VALUE)

SEGMENT_KEYS = ("segment_labels", "segment_start_times", "segment_scores", "segment_end_times")


def dequantize(quantized: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 codes -> float32 features: ``x = q * 4/255 + (4/512 - 2)``, bit-identical to TF.

    ``quantized`` may be any uint8 array, including a strided view; ``out`` (float32, same
    shape) avoids an allocation.
    """
    if out is None:
        out = np.empty(quantized.shape, dtype=np.float32)
    # TF's order of float32 roundings: float32(q) (exact), * scale, then + bias. Three in-place
    # passes over an L2-resident buffer beat one mixed-type ufunc call (which casts in chunks).
    np.copyto(out, quantized, casting="unsafe")
    out *= DEQUANTIZE_SCALE
    out += DEQUANTIZE_BIAS
    return out


def quantize(features: np.ndarray) -> np.ndarray:
    """float features -> uint8 codes: ``round((clip(x, -2, 2) + 2) * 255/4)`` (round half to even)."""
    x = np.clip(np.asarray(features, dtype=np.float64), MIN_QUANTIZED_VALUE, MAX_QUANTIZED_VALUE)
    codes = np.rint((x - MIN_QUANTIZED_VALUE) * (255.0 / (MAX_QUANTIZED_VALUE - MIN_QUANTIZED_VALUE)))
    return codes.astype(np.uint8)


@dataclass(frozen=True)
class FeatureSpec:
    """One feature of a record.

    Attributes:
        name: the key in the record (``"rgb"``, ``"mean_audio"``, ``"AUDIO/feature/floats"`` ...).
        size: values per frame (``D``).
        encoding: ``"bytes"`` — one string of ``D`` uint8 codes per frame (YT8M frame level);
            ``"float"`` — a float_list of ``D`` values per frame (YT8M video level, MediaPipe).
    """

    name: str
    size: int
    encoding: str = "bytes"

    def __post_init__(self) -> None:
        if self.encoding not in ("bytes", "float"):
            raise ValueError(f"feature {self.name!r}: encoding must be 'bytes' or 'float', got {self.encoding!r}")
        if self.size <= 0:
            raise ValueError(f"feature {self.name!r}: size must be positive, got {self.size}")


@dataclass(frozen=True)
class Schema:
    """The layout of one dataset's records.

    Attributes:
        features: the features to read, in order (readers return them in this order).
        level: ``"frame"`` — a ``SequenceExample`` with one feature list per feature;
            ``"video"`` — an ``Example`` with one value list per feature (``num_frames == 1``).
        id_keys: context keys holding the video id; the first present wins
            (``"id"`` since 2018, ``"video_id"`` in the 2017 data).
        label_key: context key of the int64 class ids (absent = no labels, as in test sets).
        segment_keys: context keys of the 2019 segment annotations
            (labels, start times, scores, end times); read when ``segment_labels`` is present.
    """

    features: tuple[FeatureSpec, ...]
    level: str = "frame"
    id_keys: tuple[str, ...] = ("id", "video_id")
    label_key: str = "labels"
    segment_keys: tuple[str, str, str, str] = SEGMENT_KEYS

    def __post_init__(self) -> None:
        if self.level not in ("frame", "video"):
            raise ValueError(f"schema level must be 'frame' or 'video', got {self.level!r}")
        object.__setattr__(self, "features", tuple(self.features))
        names = [spec.name for spec in self.features]
        if not names:
            raise ValueError("a schema needs at least one feature")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate feature names in schema: {names}")

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.features)

    def feature(self, name: str) -> FeatureSpec:
        for spec in self.features:
            if spec.name == name:
                return spec
        raise KeyError(f"feature {name!r} is not in the schema (features: {', '.join(self.feature_names)})")

    def select(self, *names: str) -> "Schema":
        """The same schema restricted to ``names`` (e.g. ``YT8M_FRAME.select("rgb")``)."""
        return replace(self, features=tuple(self.feature(name) for name in names))

    # Presets ------------------------------------------------------------------------------
    @classmethod
    def yt8m_frame(cls, rgb: bool = True, audio: bool = True) -> "Schema":
        """YouTube-8M frame level: ``rgb`` 1024 bytes + ``audio`` 128 bytes per frame."""
        specs = [FeatureSpec("rgb", 1024, "bytes")] * rgb + [FeatureSpec("audio", 128, "bytes")] * audio
        return cls(features=tuple(specs), level="frame")

    @classmethod
    def yt8m_video(cls, rgb: bool = True, audio: bool = True) -> "Schema":
        """YouTube-8M video level: ``mean_rgb`` 1024 floats + ``mean_audio`` 128 floats."""
        specs = [FeatureSpec("mean_rgb", 1024, "float")] * rgb + [FeatureSpec("mean_audio", 128, "float")] * audio
        return cls(features=tuple(specs), level="video")


YT8M_FRAME = Schema.yt8m_frame()
YT8M_VIDEO = Schema.yt8m_video()
YT8M_FRAME_RGB = Schema.yt8m_frame(audio=False)
YT8M_FRAME_AUDIO = Schema.yt8m_frame(rgb=False)
