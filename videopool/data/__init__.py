"""YouTube-8M records without TensorFlow: TFRecord I/O, schemas, datasets, demo data.

Public API (stable): :func:`iter_videos`, :func:`write_videos`, :class:`Video`,
:class:`VideoBatch`, the dataset classes and :func:`collate_videos`.
"""

from videopool._lazy import lazy_exports

_EXPORTS = {
    # records
    "Video": "video",
    "SegmentAnnotations": "video",
    "VideoBatch": "batch",
    # formats (TFRecord framing, protobuf codec, YT8M schema)
    "iter_videos": "io",
    "write_videos": "io",
    "read_records": "tfrecord",
    "TFRecordWriter": "tfrecord",
    "RecordError": "errors",
    "ErrorPolicy": "errors",
    "index_records": "tfrecord",
    "read_record_at": "tfrecord",
    "decode_record": "codec",
    "encode_video": "codec",
    "expand_paths": "io",
    "write_vocabulary": "vocabulary",
    "FeatureSpec": "schema",
    "Schema": "schema",
    "dequantize": "schema",
    "quantize": "schema",
    "read_vocabulary": "vocabulary",
    "Vocabulary": "vocabulary",
    # datasets
    "FrameSelection": "sampling",
    "select_frames": "sampling",
    "VideoIterableDataset": "dataset",
    "VideoMapDataset": "dataset",
    "collate_videos": "collate",
    # demo data
    "make_demo_data": "demo",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
