"""A context-aware segment model's precomputed context (``encode_context`` once per video, gathered per segment
row) gives the scores of the former path that handed every segment row its whole video, in ``localize`` and in
``evaluate-segments``' scoring, and the frozen video encoder runs once per unique video of a batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videopool.data import VideoBatch
from videopool.data.segments import collate_segments
from videopool.inference.localize import AveragedScorer, localize
from videopool.inference.segment_eval import score_rated_segments, segment_metrics
from videopool.models import create_model
from videopool.models.segment import (AveragedSegmentClassifier, ContextAwareSegmentClassifier, SegmentClassifier,
                                      SegmentModelConfig)

V = 6
SETTINGS = {"cluster_size": 2, "hidden.size": 8, "modalities": {"rgb": 8, "audio": 4}}
LENGTHS = [(23, 40, 7, 31), (12, 5, 44)]  # frames of the videos of each loader batch


def _models():
    """A context-aware model (with BN, SE gating: every layer of the head), the average of it and a
    context-ignoring one (saved kind), and the two averaged by localize's scorer; random, fixed weights."""
    torch.manual_seed(0)
    video = create_model("gated_netvlad_256_small", num_classes=V, **SETTINGS)
    keys = {"video": video.config.to_dict(), "fc_size": 16, "num_mixtures": 2}
    aware = ContextAwareSegmentClassifier(SegmentModelConfig(segment_model="context_aware", gating="se", **keys))
    aware.load_video_weights(video)
    with torch.no_grad():  # the video encoder differs from the segment encoder, as after fine-tuning
        for p in aware.segment_encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
        aware.input_norm.running_mean.uniform_(-0.1, 0.1)
    ignoring = SegmentClassifier(SegmentModelConfig(segment_model="context_ignoring", **keys))
    return {"aware": aware.eval(), "average": AveragedSegmentClassifier.of([ignoring, aware]).eval(),
            "scorer": AveragedScorer([aware, ignoring]).eval()}, aware


def _count_encoded_videos(aware: ContextAwareSegmentClassifier) -> list[int]:
    """Rows given to the frozen video encoder, one entry per call."""
    calls: list[int] = []
    encode = aware.video_encoder.encode

    def counting(frames, mask=None):
        calls.append(next(iter(frames.values())).shape[0])
        return encode(frames, mask)

    aware.video_encoder.encode = counting
    return calls


def _video_batches():
    generator = torch.Generator().manual_seed(3)
    batches = []
    for b, lengths in enumerate(LENGTHS):
        longest = max(lengths)
        mask = torch.arange(longest)[None] < torch.tensor(lengths)[:, None]
        frames = {"rgb": torch.randn(len(lengths), longest, 8, generator=generator) * mask[..., None],
                  "audio": torch.randn(len(lengths), longest, 4, generator=generator) * mask[..., None]}
        batches.append(VideoBatch(ids=[f"v{b}{i}" for i in range(len(lengths))], frames=frames, mask=mask,
                                  num_frames=torch.tensor(lengths), labels=torch.zeros(len(lengths), V)))
    return batches


def _scores_by_segment(found) -> dict[str, np.ndarray]:
    scores, items, counts = found.top_k.result()
    assert (counts == found.num_segments).all()  # top_n holds every segment: all scores are compared
    by_name = {name: np.full(len(found.class_ids), np.nan, np.float32) for name in found.names}
    for column in range(len(found.class_ids)):
        kept = int(counts[column])
        for score, item in zip(scores[column, :kept].tolist(), items[column, :kept].tolist()):
            by_name[found.names[item]][column] = score
    assert all(np.isfinite(row).all() for row in by_name.values())  # every segment scored once for every class
    return by_name


@pytest.mark.parametrize("kind", ["aware", "average", "scorer"])
@pytest.mark.parametrize("video_frames", [None, 16])
def test_localize_encodes_each_video_once_and_scores_as_the_per_row_path(kind, video_frames):
    models, aware = _models()
    model = models[kind]
    calls = _count_encoded_videos(aware)
    runs = {}
    for once in (False, True):
        calls.clear()
        found = localize(model, _video_batches(), list(range(V)), top_n=1000, batch_size=7, context_frames=3,
                         video_frames=video_frames, context_once=once)
        runs[once] = _scores_by_segment(found), list(calls)
    segments = sum(-(-n // 5) for lengths in LENGTHS for n in lengths)
    assert found.num_segments == segments == 35
    assert sum(runs[False][1]) == segments  # the former path: every segment row re-encoded its video
    assert runs[True][1] == [len(lengths) for lengths in LENGTHS]  # one call per batch, one row per video
    before, after = runs[False][0], runs[True][0]
    assert before.keys() == after.keys()
    for name in before:
        np.testing.assert_allclose(after[name], before[name], rtol=1e-5, atol=1e-6)


def _segment_batches(rng: np.random.Generator) -> list:
    """Two SegmentBatches as the SegmentLoader makes them: several rated segments per video, each row carrying
    its whole video; the first video's segments are split across the two batches."""
    videos = {f"w{i}": {"rgb": torch.from_numpy(rng.normal(size=(n, 8)).astype(np.float32)),
                        "audio": torch.from_numpy(rng.normal(size=(n, 4)).astype(np.float32))}
              for i, n in enumerate([30, 18, 41, 9])}
    rows = [("w0", 0), ("w0", 10), ("w1", 5), ("w2", 0), ("w2", 20), ("w2", 35), ("w0", 25), ("w3", 0), ("w1", 10)]
    samples = []
    for video_id, start in rows:
        frames = {k: v[max(start - 3, 0): start + 8] for k, v in videos[video_id].items()}
        width = next(iter(frames.values())).shape[0]
        padded = {k: torch.cat([v, torch.zeros(11 - width, v.shape[1])]) for k, v in frames.items()}
        targets = torch.from_numpy((rng.random(V) < 0.5).astype(np.float32))
        rated = torch.from_numpy(rng.random(V) < 0.6)
        samples.append({"id": f"{video_id}:{start}", "frames": padded, "mask": torch.arange(11) < width,
                        "targets": targets * rated, "rated": rated, "mined": torch.zeros(V, dtype=torch.bool),
                        "video": videos[video_id]})
    return [collate_segments(samples[:5]), collate_segments(samples[5:])]


@pytest.mark.parametrize("kind", ["aware", "average"])
def test_evaluate_segments_encodes_each_video_once_per_batch_and_scores_as_the_per_row_path(kind):
    models, aware = _models()
    calls = _count_encoded_videos(aware)
    batches = _segment_batches(np.random.default_rng(5))
    ids, before, targets, rated = score_rated_segments(models[kind], batches, context_once=False)
    assert calls == [5, 4]  # the former path: one encoding per segment row
    calls.clear()
    ids_after, after, targets_after, rated_after = score_rated_segments(models[kind], batches)
    assert calls == [3, 4]  # batch 1: w0, w1, w2; batch 2: w2, w0, w3, w1
    assert ids_after == ids
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    assert np.array_equal(targets_after, targets) and np.array_equal(rated_after, rated)
    metrics = [segment_metrics(ids, scores, targets, rated) for scores in (before, after)]
    assert metrics[1]["per_class_ap"] == metrics[0]["per_class_ap"]  # the same ranking: the same APs, exactly
    assert metrics[1]["rated_pair_loss"] == pytest.approx(metrics[0]["rated_pair_loss"], rel=1e-6)


def test_a_precomputed_context_of_the_wrong_width_is_refused():
    models, aware = _models()
    segment = {"rgb": torch.randn(2, 11, 8), "audio": torch.randn(2, 11, 4)}
    with pytest.raises(ValueError, match="width"):
        models["average"](segment, torch.ones(2, 11, dtype=torch.bool), context=torch.zeros(2, aware.context_size + 1))
