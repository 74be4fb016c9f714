"""Segment classifiers for temporal localisation (YouTube-8M Segments, 2019): seed paper 004 §4.2 and CESHINE
(spec §7.4, §10).

Contract (relied on by ``videopool.inference.localize`` and the ``localize`` / ``evaluate-segments`` commands)::

    model.needs_video_context: bool          a class attribute
    model(frames: dict[str, Tensor [B, N, D]], mask: Tensor [B, N],
          video_frames: dict[str, Tensor [B, T, D]] | None = None, video_mask: Tensor [B, T] | None = None)
        -> probabilities [B, V] in eval mode (a ModelOutput in training mode, for the model's ``loss``)

* ``frames``/``mask`` are one segment per row: its 5 frames, optionally widened by ``t`` context frames on each
  side (padding rows False in the mask). ``N`` is free.
* ``video_frames``/``video_mask`` are the whole video each segment comes from, row for row. Only a model with
  ``needs_video_context = True`` reads them (and then requires them); the others ignore them, so a caller may
  always pass them, or pass them only when ``needs_video_context`` is True.
* ``V`` is the label space of the video-level model the segment model was initialised from (3862 for the real
  data, the demo vocabulary's size for the demo); the 1,000-class whitelist is applied by the caller.
* ``SegmentClassifier`` (context-ignoring, ``needs_video_context = False``): a video-level model applied to the
  segment's frames. ``ContextAwareSegmentClassifier`` (``True``): frozen video encoder on the whole video +
  segment encoder on the segment -> concat -> FC + ReLU (+ gating) -> MoE. ``AveragedSegmentClassifier``: the
  mean of its members' probabilities (``needs_video_context`` = any member's).
* Saved with :func:`videopool.models.checkpoint.save_weights` like every model (their ``config.to_dict()`` is
  stored), so ``videopool.models.load_model(RUN)`` returns them.
"""
