"""Checks of a data set against a model before a long run reads it: every shard once, in seconds.

:func:`check_shards` reads the first intact record of every file (a second one when the first does not fit
and bad records are skipped), tells which kind of file it is (:func:`videopool.data.inspect.file_layouts`) and
compares it with the features the model reads: a shard of another kind (video-level ``mean_rgb``, rgb-only,
another feature size) is a :class:`ShardLayoutError` naming *that* shard, what it holds, what the model
expects and the option that reads it. The sampled records are also decoded with the model's schema and the
label range, so a bad label or a wrong vocabulary fails before the first training step rather than at the
first validation. It returns the schema to decode the data with: the model's feature names and sizes, the
files' level and encodings, so a later bad record is always reported against its own shard (a schema
inferred from the first file would blame every good shard when the first one is the odd one out).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

from videopool.data.codec import decode_record
from videopool.data.errors import ErrorPolicy, RecordError
from videopool.data.inspect import describe_layout, file_layouts, unit
from videopool.data.io import expand_paths
from videopool.data.schema import Schema


class ShardLayoutError(ValueError):
    """A shard holds another kind of data than the model reads. ``path``: the shard; ``found``: its
    :class:`Schema` (as inferred from its first record); ``expected``: the model's ``{feature: size}``."""

    def __init__(self, message: str, *, path: str, found: Schema, expected: Mapping[str, int]) -> None:
        super().__init__(message)
        self.path, self.found, self.expected = path, found, dict(expected)


@dataclass
class ShardCheck:
    """What :func:`check_shards` found: the decode ``schema``, the ``files``, how many records it decoded and
    how many of them have labels (0 for a test set)."""

    schema: Schema | None
    files: list[str]
    checked_records: int = 0
    labelled_records: int = 0
    bad_records: list[RecordError] = field(default_factory=list)


def check_shards(patterns: str | Sequence[str], *, features: Mapping[str, int], num_classes: int | None = None,
                 on_error: str = "error", verify_crc: bool = True, what: str = "data",
                 trainable: bool = True, reads_with: Callable[[dict[str, int]], str] | None = None,
                 record_layout=None) -> ShardCheck:
    """Check every shard of ``patterns`` against the model's ``features`` (``{name: size}``, in order).

    Args:
        features: the model's modalities and sizes (``model.config.modalities``).
        num_classes: the model's V; a sampled label outside ``[0, V)`` is a bad record.
        on_error: ``"error"``: a bad sampled record raises its :class:`RecordError` now; ``"skip"``: it is left
            for the run to skip and count (returned in ``bad_records``), and the next record is sampled.
        what: the option that named the files (``--train-data``), for the messages.
        trainable: the messages suggest the ``--set modalities...`` override that reads a shard (training);
            with ``False`` they say what the (trained) model reads instead.
        reads_with: for a shard of other features, ``reads_with({name: size})`` says which options read it
            (the trainer checks them against its model); by default, which modalities a model needs.
        record_layout: a :class:`~videopool.data.layouts.Layout` (or Schema) the records are in: its record keys are read
            as its feature names, with its quantization ranges (:func:`~videopool.data.layouts.apply_layout`).

    Raises:
        ShardLayoutError: a shard of another kind or feature size, named with what it holds and the fix.
        RecordError: a bad sampled record, with ``on_error="error"``.
        FileNotFoundError: a pattern matches no file.
    """
    files = expand_paths(patterns)
    expected = dict(features)
    if not expected:
        raise ValueError("the model reads no feature (features={})")
    check = ShardCheck(schema=None, files=files)
    reference: Schema | None = None  # the layout (level, encodings) of the first shard that fits
    misfits: list[tuple[str, Schema]] = []
    for path in files:
        policy = ErrorPolicy("skip", max_examples=1 << 30) if on_error == "skip" else None
        tries = 0
        for record, layout in file_layouts(path, verify_crc=verify_crc, errors=policy,
                                           layout=record_layout):
            tries += 1
            if _fits(layout, expected, reference):
                reference = reference or layout
                schema = decode_schema(reference, expected)
                try:
                    video = decode_record(record.payload, schema, dequantize=False, num_classes=num_classes,
                                          max_frames=1)
                except RecordError as error:
                    error.located(path, record.index, record.offset)
                    if policy is None:
                        raise
                    policy.handle(error)
                    continue  # a bad record, not a bad shard: sample the next one
                check.checked_records += 1
                check.labelled_records += bool(video.labels)
                break
            if policy is None or tries >= 2:  # two intact records of another kind: the shard is of that kind
                misfits.append((path, layout))
                break
        if policy is not None:
            check.bad_records.extend(policy.examples)
    if misfits:
        path, layout = misfits[0]
        raise ShardLayoutError(_misfit_message(path, layout, expected, what, trainable, len(misfits), len(files),
                                               reads_with), path=path, found=layout, expected=expected)
    check.schema = decode_schema(reference, expected) if reference is not None else None
    return check


def decode_schema(layout: Schema, expected: Mapping[str, int]) -> Schema:
    """The model's features (names, sizes, order) with the level and encodings of the files."""
    return Schema(features=tuple(replace(layout.feature(name), size=size) for name, size in expected.items()),
                  level=layout.level, id_keys=layout.id_keys, label_key=layout.label_key)


def _fits(layout: Schema, expected: Mapping[str, int], reference: Schema | None) -> bool:
    sizes = {spec.name: spec.size for spec in layout.features}
    if any(sizes.get(name) != size for name, size in expected.items()):
        return False
    if reference is None:
        return True
    return layout.level == reference.level and all(
        layout.feature(name).encoding == reference.feature(name).encoding for name in expected)


def _layout_naming(found: Schema, expected: Mapping[str, int]) -> str | None:
    """The built-in layout under whose names a file read without one has the model's features, if any."""
    from videopool.data.layouts import LAYOUTS, apply_layout

    for name, layout in LAYOUTS.items():
        if any(spec.key for spec in layout.schema.features):  # only layouts that rename record keys
            sizes = {spec.name: spec.size for spec in apply_layout(found, layout).features}
            if all(sizes.get(feature) == size for feature, size in expected.items()):
                return name
    return None


def modalities_text(features: Mapping[str, int]) -> str:
    """``{mean_rgb: 1024, mean_audio: 128}``: a modalities mapping as ``--set`` takes it (YAML)."""
    return "{" + ", ".join(f"{name}: {size}" for name, size in features.items()) + "}"


def _expected_words(expected: Mapping[str, int]) -> str:
    return ", ".join(f"{name} ({size})" for name, size in expected.items())


def _misfit_message(path: str, layout: Schema, expected: Mapping[str, int], what: str, trainable: bool,
                    misfits: int, total: int, reads_with: Callable[[dict[str, int]], str] | None) -> str:
    name = path
    present = {spec.name: spec for spec in layout.features}
    missing = [feature for feature in expected if feature not in present]
    others = total - misfits
    among = f" (files unlike the model's data: {misfits} of the {total} in {what})" if total > 1 else ""
    if missing:
        kind = describe_layout(layout, only=layout.level == "frame" and bool(set(expected) & set(present)))
        found = {spec.name: spec.size for spec in layout.features}
        message = (f"{what}: {name} is {kind}, but the model reads {_expected_words(expected)} and the file has "
                   f"no {' or '.join(map(repr, missing))}{among}")
        named = _layout_naming(layout, expected)
        if named is not None:  # e.g. MediaPipe's RGB/feature/floats: the layout names it rgb
            return message + f"; it is in the {named} layout, which names its features as the model does: " \
                             f"read it with --layout {named}"
        if not trainable:
            return message + "; use data of the kind the model was trained on"
        if reads_with is not None:
            return message + "; " + reads_with(found)
        return message + f"; a model with modalities {modalities_text(found)} reads this kind of file"
    differing = [feature for feature in expected if present[feature].size != expected[feature]]
    if not differing:  # the sizes fit, but the level or an encoding differs from the first file that fits
        return (f"{what}: {name} is {describe_layout(layout)}, unlike the first file of {what} that fits the model"
                f"{among}; one run reads one kind of file")
    feature = differing[0]
    spec = present[feature]
    per = "per frame" if layout.level == "frame" else "per video"
    message = (f"{what}: {name} has {feature!r} of {spec.size} {unit(spec)} {per}, the model expects "
               f"{expected[feature]} (found {spec.size}, expected {expected[feature]}){among}")
    if not trainable:
        return message + "; use data of the kind the model was trained on"
    if others:
        return message + f"; remove it from {what}, or, if all your data is like it, train with " \
                         f"--set modalities.{feature}={spec.size}"
    return message + f"; train with --set modalities.{feature}={spec.size} to read it"
