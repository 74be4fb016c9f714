"""Inference: the one code path that ``evaluate``, ``predict``, validation inside training and ``export`` share.

    from videopool.models import load_model
    from videopool.inference import evaluate
    model, info = load_model("runs/gnv")
    metrics = evaluate(model, loader)        # loader: videopool.data.loader.make_loader(...)
"""

from videopool.inference.evaluation import evaluate
from videopool.inference.export import ExportError, export_model, load_exported
from videopool.inference.formats import (
    SegmentSubmissionWriter,
    VideoPredictionWriter,
    iter_video_predictions,
    read_segment_submission,
    read_video_predictions,
)
from videopool.inference.predict import (
    CompileError,
    NonFiniteScoresError,
    bf16_copy,
    inference_num_frames,
    read_class_names,
    run_inference,
    write_predictions,
)

__all__ = [
    "CompileError", "ExportError", "NonFiniteScoresError", "SegmentSubmissionWriter", "VideoPredictionWriter", "bf16_copy", "evaluate",
    "export_model", "inference_num_frames", "iter_video_predictions", "load_exported", "read_class_names",
    "read_segment_submission", "read_video_predictions", "run_inference", "write_predictions",
]  # fmt: skip
