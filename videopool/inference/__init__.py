"""Inference: one code path shared by ``evaluate``, ``predict`` and in-training validation."""

from videopool._lazy import lazy_exports

_EXPORTS = {
    "load_model": "predict",
    "run_inference": "predict",
    "bf16_copy": "predict",
    "evaluate": "evaluation",
    "export_model": "export",
    "load_exported": "export",
    # submission files (formats.py)
    "VideoPredictionWriter": "formats",
    "SegmentSubmissionWriter": "formats",
    "iter_video_predictions": "formats",
    "read_video_predictions": "formats",
    "read_segment_submission": "formats",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
