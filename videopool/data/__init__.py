"""YouTube-8M records without TensorFlow: TFRecord I/O, schemas, datasets, loaders.

Public API (stable): :func:`iter_videos`, :func:`write_videos`, :class:`Video`, :class:`VideoBatch`, the dataset
classes, :func:`collate_videos` and :func:`make_loader`. Data flows records → :class:`Video` → frame selection →
:class:`VideoBatch` (frames per modality + mask).
"""

from videopool.data.batch import VideoBatch
from videopool.data.codec import decode_record, encode_video
from videopool.data.collate import collate_videos
from videopool.data.dataset import VideoIterableDataset, VideoMapDataset
from videopool.data.errors import ErrorPolicy, RecordError
from videopool.data.io import expand_paths, iter_videos, write_videos
from videopool.data.loader import make_loader, resolve_workers
from videopool.data.sampling import FRAME_SELECTIONS, FrameSelection, select_frames
from videopool.data.schema import FeatureSpec, Schema, dequantize, quantize
from videopool.data.tfrecord import TFRecordWriter, index_records, read_record_at, read_records
from videopool.data.video import SegmentAnnotations, Video
from videopool.data.vocabulary import Vocabulary, read_vocabulary, write_vocabulary

__all__ = [
    "FRAME_SELECTIONS", "ErrorPolicy", "FeatureSpec", "FrameSelection", "RecordError", "Schema",
    "SegmentAnnotations", "TFRecordWriter", "Video", "VideoBatch", "VideoIterableDataset", "VideoMapDataset",
    "Vocabulary", "collate_videos", "decode_record", "dequantize", "encode_video", "expand_paths", "index_records",
    "iter_videos", "make_loader", "quantize", "read_record_at", "read_records", "read_vocabulary",
    "resolve_workers", "select_frames", "write_videos", "write_vocabulary",
]  # fmt: skip
