"""Summaries of TFRecord shards: what ``videopool inspect`` prints.

:func:`inspect_shards` reads every record once (quantized bytes, no dequantization) and
collects counts: files, records, bytes, level and features, frames per video, label
frequencies, segment annotations and bad records. :func:`format_report` renders it as text;
:meth:`InspectReport.to_dict` gives the JSON form.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from typing import Iterator
from dataclasses import dataclass, field

import numpy as np

from videopool.core.urls import is_url
from videopool.data import remote
from videopool.data.codec import decode_record, infer_schema
from videopool.data.errors import ErrorPolicy, RecordError
from videopool.data.io import expand_paths
from videopool.data.layouts import LAYOUTS, apply_layout, detect_layout, features_text
from videopool.data.schema import Schema
from videopool.data.tfrecord import Record, read_records
from videopool.data.vocabulary import Vocabulary


@dataclass
class InspectReport:
    files: list[dict] = field(default_factory=list)  # {"path", "records", "videos", "bytes"}
    schema: Schema | None = None
    num_records: int = 0
    num_videos: int = 0
    total_bytes: int = 0
    frames: list[int] = field(default_factory=list)  # frames per good frame-level video
    label_counts: Counter = field(default_factory=Counter)
    labels_per_video: list[int] = field(default_factory=list)
    segment_videos: int = 0
    segment_count: int = 0
    segment_positives: int = 0
    segment_classes: Counter = field(default_factory=Counter)
    other_schemas: list[Schema] = field(default_factory=list)  # files whose inferred layout differs
    bad_records: int = 0
    bad_by_kind: dict[str, int] = field(default_factory=dict)
    bad_examples: list[RecordError] = field(default_factory=list)
    layout: str | None = None  # the named layout the first file's records are in (None: none fits)
    layout_variant: str = ""
    layout_given: bool = False  # read with --layout (not detected)
    seen_keys: dict = field(default_factory=dict)  # when no layout fits: {"features": {...}, "context": [...]}
    features_option: str | None = None  # the options a model reads the first file with

    def to_dict(self, vocabulary: Vocabulary | None = None, top: int = 20) -> dict:
        frames = np.asarray(self.frames, dtype=np.int64)
        per_video = np.asarray(self.labels_per_video, dtype=np.int64)
        return {
            "files": self.files,
            "num_files": len(self.files),
            "num_records": self.num_records,
            "num_videos": self.num_videos,
            "total_bytes": self.total_bytes,
            "level": self.schema.level if self.schema else None,
            "features": [{"name": s.name, "size": s.size, "encoding": s.encoding}
                         for s in (self.schema.features if self.schema else ())],
            "other_layouts": [{"level": other.level, "features": [f"{s.name}:{s.size}:{s.encoding}"
                                                                  for s in other.features]}
                              for other in self.other_schemas],
            "frames": _stats(frames),
            "frames_histogram": [{"from": lo, "to": hi, "videos": n} for lo, hi, n in frame_histogram(frames)],
            "labels_per_video": _stats(per_video),
            "videos_without_labels": int((per_video == 0).sum()),
            "distinct_labels": len(self.label_counts),
            "max_label": max(self.label_counts) if self.label_counts else None,
            "top_labels": [{"id": label, "videos": count, **({"name": vocabulary.name(label)} if vocabulary else {})}
                           for label, count in self.label_counts.most_common(top)],
            "segments": {"videos": self.segment_videos, "rated": self.segment_count,
                         "positives": self.segment_positives, "classes": len(self.segment_classes)},
            "layout": self.layout, "layout_variant": self.layout_variant, "layout_given": self.layout_given,
            "seen_keys": self.seen_keys,
            "features_option": self.features_option,
            "bad_records": {"count": self.bad_records, "by_kind": self.bad_by_kind,
                            "examples": [{"path": e.path, "index": e.index, "offset": e.offset,
                                          "kind": e.kind, "message": e.message} for e in self.bad_examples]},
        }


def file_layouts(path: str, *, verify_crc: bool = True, errors: ErrorPolicy | None = None,
                 max_records: int = 8, layout=None) -> Iterator[tuple[Record, Schema]]:
    """``(record, inferred schema)`` for the intact records among the first ``max_records`` of one file, lazily:
    the kind of file it is, read off each record (:func:`~videopool.data.codec.infer_schema`) as
    :func:`inspect_shards` does per file. With ``errors=None`` a bad record raises :class:`RecordError`; with a
    skipping policy it is counted and the next record is tried. With a ``layout``
    (:class:`~videopool.data.layouts.Layout`) the schema is seen through it (:func:`~videopool.data.layouts.apply_layout`).
    """
    records = read_records(path, verify_crc=verify_crc, errors=errors)
    for record in itertools.islice(records, max_records):
        try:
            found = apply_layout(infer_schema(record.payload), layout)
        except RecordError as error:
            error.located(path, record.index, record.offset)
            if errors is None:
                raise
            errors.handle(error)
            continue
        yield record, found


def unit(spec) -> str:
    return "bytes" if spec.encoding == "bytes" else "floats"


def describe_layout(schema: Schema, only: bool = False) -> str:
    """The kind of file a schema describes, in words: ``a frame-level file (rgb: 1024 bytes per frame, ...)``,
    ``a video-level file (one vector per video: mean_rgb: 1024 floats, ...)``; ``only`` says "with only ..."."""
    parts = ", ".join(f"{spec.name}: {spec.size} {unit(spec)}" for spec in schema.features)
    if schema.level == "video":
        return f"a video-level file (one vector per video: {parts})"
    names = " and ".join(schema.feature_names)
    if only:
        return f"a frame-level file with only {names} ({parts} per frame)"
    return f"a frame-level file ({parts} per frame)"


def _stats(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"count": 0}
    return {"count": int(values.size), "min": int(values.min()), "mean": round(float(values.mean()), 3),
            "median": float(np.median(values)), "max": int(values.max())}


def frame_histogram(frames: np.ndarray, width: int = 30, top: int = 300) -> list[tuple[int, int, int]]:
    """(first, last, videos) per bin of ``width`` frames from 1 to ``top``, plus one bin above."""
    if frames.size == 0:
        return []
    bins = []
    for low in range(1, top + 1, width):
        high = low + width - 1
        bins.append((low, high, int(((frames >= low) & (frames <= high)).sum())))
    if frames.max() > top:
        bins.append((top + 1, int(frames.max()), int((frames > top).sum())))
    return bins


def inspect_shards(paths_or_globs, *, schema: Schema | None = None, verify_crc: bool = True,
                   on_error: str = "skip", num_classes: int | None = None, max_examples: int = 20,
                   progress: bool | None = None, layout=None) -> InspectReport:
    """Read every record of the given shards and summarise them (see :class:`InspectReport`).

    Without ``schema`` each file's layout is inferred from its first record, so a folder that
    mixes frame- and video-level shards is summarised rather than failing on every record.

    The first record tells which named layout the data is in (:func:`~videopool.data.layouts.detect_layout`);
    with ``layout`` (a :class:`~videopool.data.layouts.Layout`) the records are read through it instead.

    ``on_error="skip"`` (the default here) counts bad records and lists the first
    ``max_examples``; ``"error"`` raises on the first one. ``progress=None`` shows a tqdm
    bar on a terminal when there is more than one file.
    """
    from tqdm.auto import tqdm

    files = expand_paths(paths_or_globs)
    policy = ErrorPolicy(on_error, max_examples=max_examples)
    report = InspectReport()
    disable = (len(files) < 2 or None) if progress is None else not progress
    for path in tqdm(files, desc="inspect", unit="file", disable=disable):
        size = remote.size_of(path) if is_url(path) else os.path.getsize(path)
        entry = {"path": path, "records": 0, "videos": 0, "bytes": size}
        report.files.append(entry)
        report.total_bytes += entry["bytes"]
        bad_before = policy.count
        file_schema = schema
        for record in read_records(path, verify_crc=verify_crc, errors=policy):
            try:
                if file_schema is None:
                    if report.layout is None and not report.seen_keys:
                        _detect(report, record.payload, layout)
                    # read through the given layout, else the one the first file was found in
                    reading = layout or (LAYOUTS.get(report.layout) if report.layout else None)
                    file_schema = apply_layout(infer_schema(record.payload), reading)
                    entry["level"] = file_schema.level
                    entry["features"] = [f"{s.name}:{s.size}:{s.encoding}" for s in file_schema.features]
                    if report.schema is None:
                        report.schema = file_schema
                    elif file_schema != report.schema and file_schema not in report.other_schemas:
                        report.other_schemas.append(file_schema)
                video = decode_record(record.payload, file_schema, dequantize=False, num_classes=num_classes)
            except RecordError as error:
                policy.handle(error.located(path, record.index, record.offset))
                continue
            entry["videos"] += 1
            _count_video(report, video, frame_level=file_schema.level == "frame")
        # Bad records include those the framing layer dropped (CRC, truncation). After a corrupt
        # length field the rest of the file cannot be framed, so those records are not counted.
        entry["bad"] = policy.count - bad_before
        entry["records"] = entry["videos"] + entry["bad"]
    report.schema = report.schema or schema
    report.num_videos = sum(entry["videos"] for entry in report.files)
    report.num_records = report.num_videos + policy.count
    report.bad_records = policy.count
    report.bad_by_kind = dict(policy.counts_by_kind)
    report.bad_examples = list(policy.examples)
    return report


def _detect(report: InspectReport, payload, layout) -> None:
    detection = detect_layout(payload)
    if layout is not None:
        report.layout, report.layout_given = layout.name, True
    elif detection.layout is not None:
        report.layout, report.layout_variant = detection.layout.name, detection.variant
    else:
        report.seen_keys = {"features": detection.keys, "context": detection.context}
    named = apply_layout(detection.found, layout or detection.layout)
    option = f"--features {features_text({spec.name: spec.size for spec in named.features})}"
    if detection.layout is not None and layout is None and not detection.layout.name.startswith("yt8m"):
        option = f"--layout {detection.layout.name} {option}"  # the names the model sees are the layout's
    report.features_option = option


def _layout_lines(data: dict) -> list[str]:
    if data["layout"] is not None:
        how = "read with --layout" if data["layout_given"] else "detected"
        variant = f", {data['layout_variant']}" if data["layout_variant"] else ""
        lines = [f"layout: {data['layout']} ({how}{variant})"]
    elif data["seen_keys"]:
        seen = data["seen_keys"]
        features = ", ".join(f"{key} ({what})" for key, what in seen["features"].items()) or "none"
        lines = [f"layout: none of {', '.join(LAYOUTS)} fits; the first record holds features {features} and "
                 f"context keys {', '.join(seen['context']) or 'none'} (read it with --layout FILE.yaml, "
                 "docs/custom-features.md)"]
    else:
        return []
    if data["features_option"]:
        lines.append(f"a model reads it with: {data['features_option']}")
    return lines


def _count_video(report: InspectReport, video, frame_level: bool) -> None:
    if frame_level:
        report.frames.append(video.num_frames)
    report.labels_per_video.append(len(video.labels))
    report.label_counts.update(set(video.labels))
    if video.segments is not None:
        report.segment_videos += 1
        report.segment_count += len(video.segments.labels)
        report.segment_positives += int((np.asarray(video.segments.scores) > 0.5).sum())
        report.segment_classes.update(int(label) for label in video.segments.labels)


def format_report(report: InspectReport, vocabulary: Vocabulary | None = None, top: int = 10,
                  bar_width: int = 40) -> str:
    """Human-readable summary with a text bar chart of frames per video."""
    data = report.to_dict(vocabulary, top)
    lines = [f"files: {data['num_files']}   records: {data['num_records']:,}   videos: {data['num_videos']:,}   "
             f"size: {_human_bytes(data['total_bytes'])}   level: {data['level'] or 'unknown'}"]
    if data["features"]:
        lines.append("features: " + ", ".join(f"{f['name']} ({f['size']} {f['encoding']})" for f in data["features"]))
    lines += _layout_lines(data)
    for other in data["other_layouts"]:
        lines.append(f"also ({other['level']} level, some files): {', '.join(other['features'])}")
    frames = data["frames"]
    if frames["count"] and data["level"] == "frame":
        lines.append(f"frames/video: min {frames['min']}, mean {frames['mean']:.1f}, median {frames['median']:g}, "
                     f"max {frames['max']}")
        histogram = data["frames_histogram"]
        peak = max(item["videos"] for item in histogram) or 1
        for item in histogram:
            bar = "#" * round(bar_width * item["videos"] / peak)
            lines.append(f"  {item['from']:>4}-{item['to']:<4} {bar:<{bar_width}} {item['videos']:,}")
    per_video = data["labels_per_video"]
    if per_video["count"]:
        lines.append(f"labels/video: mean {per_video['mean']:.2f}, max {per_video['max']}; "
                     f"{data['videos_without_labels']:,} video(s) without labels; "
                     f"{data['distinct_labels']:,} distinct labels (max id {data['max_label']})")
    if data["top_labels"]:
        lines.append(f"top {len(data['top_labels'])} labels:")
        for item in data["top_labels"]:
            name = f"  {item['name']}" if "name" in item else ""
            lines.append(f"  {item['id']:>6} {item['videos']:>10,}{name}")
    segments = data["segments"]
    if segments["videos"]:
        lines.append(f"segments: {segments['rated']:,} rated in {segments['videos']:,} video(s), "
                     f"{segments['positives']:,} positive, {segments['classes']:,} classes")
    bad = data["bad_records"]
    if bad["count"]:
        kinds = ", ".join(f"{kind}: {count}" for kind, count in sorted(bad["by_kind"].items()))
        lines.append(f"bad records: {bad['count']} ({kinds})")
        lines += [f"  {error}" for error in report.bad_examples]
        if bad["count"] > len(report.bad_examples):
            lines.append(f"  ... and {bad['count'] - len(report.bad_examples)} more")
    else:
        lines.append("bad records: none")
    return "\n".join(lines)


def _human_bytes(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count} B"
