"""What a record holds: feature names, sizes and encodings, plus the 8-bit (de)quantization.

YouTube-8M stores each frame feature as ``D`` bytes, one uint8 code per dimension, over the
range [-2, 2]:

* encoder (feature extractor): ``q = round((clip(x, -2, 2) + 2) * 255 / 4)``
* decoder (starter code ``Dequantize``): ``x = q * 4/255 + 4/512 - 2``

The decoder is not the encoder's exact inverse: it adds a constant ``+4/512`` to every
dimension. :func:`dequantize` keeps that bias, computed in float32 exactly as TensorFlow does,
so features are bit-identical to the TensorFlow readers'.

Other data is stored over another range: a :class:`FeatureSpec` records its own ``[min_value, max_value]``
(the starter code's ``Dequantize(feat, max_quantized_value, min_quantized_value)``), from which its decoder's
``scale = (max - min) / 255`` and ``offset = (max - min) / 512 + min`` follow. Standardised features (mean 0,
std 1) clip at ±2 under the YouTube-8M range; a layout with ``[-8, 8]`` keeps them.
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


def dequantize_constants(min_value: float = MIN_QUANTIZED_VALUE,
                         max_value: float = MAX_QUANTIZED_VALUE) -> tuple[np.float32, np.float32]:
    """``(scale, offset)`` of the decoder for codes over ``[min_value, max_value]``, as float32 the way the
    TF graph holds them: ``scale = (max - min) / 255``, ``offset = (max - min) / 512 + min``."""
    spread = max_value - min_value
    return np.float32(spread / 255.0), np.float32(spread / 512.0 + min_value)


def dequantize(quantized: np.ndarray, out: np.ndarray | None = None, *, scale: float = DEQUANTIZE_SCALE,
               offset: float = DEQUANTIZE_BIAS) -> np.ndarray:
    """uint8 codes -> float32 features: ``x = q * scale + offset``; by default YouTube-8M's
    ``q * 4/255 + (4/512 - 2)``, bit-identical to TF (other ranges: :func:`dequantize_constants`).

    ``quantized`` may be any uint8 array, including a strided view; ``out`` (float32, same
    shape) avoids an allocation.
    """
    if out is None:
        out = np.empty(quantized.shape, dtype=np.float32)
    # TF's order of float32 roundings: float32(q) (exact), * scale, then + bias. Three in-place
    # passes over an L2-resident buffer beat one mixed-type ufunc call (which casts in chunks).
    np.copyto(out, quantized, casting="unsafe")
    out *= np.float32(scale)
    out += np.float32(offset)
    return out


def quantize(features: np.ndarray, min_value: float = MIN_QUANTIZED_VALUE,
             max_value: float = MAX_QUANTIZED_VALUE) -> np.ndarray:
    """float features -> uint8 codes: ``round((clip(x, min, max) - min) * 255 / (max - min))`` (round half
    to even); by default YouTube-8M's ``round((clip(x, -2, 2) + 2) * 255/4)``. Values outside the range clip."""
    x = np.clip(np.asarray(features, dtype=np.float64), min_value, max_value)
    codes = np.rint((x - min_value) * (255.0 / (max_value - min_value)))
    return codes.astype(np.uint8)


@dataclass(frozen=True)
class FeatureSpec:
    """One feature of a record.

    Attributes:
        name: the feature's name in a :class:`~videopool.data.video.Video` and a batch, i.e. the model's
            modality (``"rgb"``, ``"mean_audio"`` ...); any string a record key may be.
        size: values per frame (``D``).
        encoding: ``"bytes"`` — one string of ``D`` uint8 codes per frame (YT8M frame level);
            ``"float"`` — a float_list of ``D`` values per frame (YT8M video level, MediaPipe).
        key: the key in the record when it differs from ``name`` (MediaPipe's ``"RGB/feature/floats"`` read as
            ``rgb``); empty = ``name``.
        min_value, max_value: the range the uint8 codes of a ``"bytes"`` feature span (module docstring);
            YouTube-8M and AudioSet use [-2, 2].
        scale, offset: an explicit decoder ``x = q · scale + offset`` instead of the range's (data quantized by
            another tool); the encoder is then ``q = clip(round((x − offset) / scale), 0, 255)``.
    """

    name: str
    size: int
    encoding: str = "bytes"
    key: str = ""
    min_value: float = MIN_QUANTIZED_VALUE
    max_value: float = MAX_QUANTIZED_VALUE
    scale: float | None = None
    offset: float | None = None

    def __post_init__(self) -> None:
        if self.encoding not in ("bytes", "float"):
            raise ValueError(f"feature {self.name!r}: encoding must be 'bytes' or 'float', got {self.encoding!r}")
        if self.size <= 0:
            raise ValueError(f"feature {self.name!r}: size must be positive, got {self.size}")
        if not float(self.min_value) < float(self.max_value):  # NaN fails too
            raise ValueError(f"feature {self.name!r}: the quantization range needs min_value < max_value, got "
                             f"[{self.min_value}, {self.max_value}]")
        if (self.scale is None) != (self.offset is None):
            raise ValueError(f"feature {self.name!r}: give both scale and offset, or neither")
        if self.scale is not None and not (float(self.scale) > 0 and np.isfinite(float(self.offset))):
            raise ValueError(f"feature {self.name!r}: scale must be > 0 and offset finite, got scale {self.scale}, "
                             f"offset {self.offset}")

    @property
    def record_key(self) -> str:
        """The key of the feature in the record."""
        return self.key or self.name

    @property
    def default_range(self) -> bool:
        """Whether the codes span YouTube-8M's [-2, 2] (the one range the batch-level decoder knows)."""
        return self.scale is None and (self.min_value, self.max_value) == (MIN_QUANTIZED_VALUE, MAX_QUANTIZED_VALUE)

    @property
    def decoder(self) -> tuple[np.float32, np.float32]:
        """``(scale, offset)`` of ``x = q · scale + offset`` in float32: explicit, else from the range."""
        if self.scale is not None:
            return np.float32(self.scale), np.float32(self.offset)
        return dequantize_constants(self.min_value, self.max_value)

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        """This feature's uint8 codes -> float32 (:func:`dequantize` with its own decoder)."""
        scale, offset = self.decoder
        return dequantize(codes, scale=scale, offset=offset)

    def quantize(self, features: np.ndarray) -> np.ndarray:
        if self.scale is None:
            return quantize(features, self.min_value, self.max_value)
        codes = np.rint((np.asarray(features, dtype=np.float64) - self.offset) / self.scale)
        return np.clip(codes, 0, 255).astype(np.uint8)


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
        keys = [spec.record_key for spec in self.features]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate record keys in schema: {keys}")

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
