"""Pad per-video items into one :class:`~videopool.data.batch.VideoBatch`.

An item is what the datasets yield (a plain dict, so any DataLoader can move it)::

    {"id": str,
     "frames": {name: Tensor[n, D]},   # float32, or uint8 codes when the dataset keeps bytes
     "num_frames": int,                # frames of the video before selection
     "labels": Tensor[V] float32,      # multi-hot
     "segments": SegmentAnnotations | None}

Every modality is padded with exact zeros to the largest selected frame count in the batch
(``mask`` is True on real rows), so a layer that honours the mask gives the same result as
on the unpadded video. uint8 frames are dequantized here, once per batch, with the
float32 arithmetic of :func:`videopool.data.schema.dequantize`; their padding rows are
zeroed *after* dequantization (a zero byte would decode to -1.99).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import get_worker_info

from videopool.data.batch import VideoBatch
from videopool.data.codec import FRAMES_IN_RECORD
from videopool.data.errors import BAD_RECORDS_KEY

# float32 constants of the YouTube-8M decoder: x = q * 4/255 + (4/512 - 2).
_DEQUANTIZE_SCALE = float(np.float32(4.0 / 255.0))
_DEQUANTIZE_BIAS = float(np.float32(4.0 / 512.0 - 2.0))


def _empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor; in a DataLoader worker, allocated in shared memory directly
    (as torch's default collate does) so sending the batch to the main process copies nothing."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    prototype = torch.empty(0, dtype=dtype)
    storage = prototype._typed_storage()._new_shared(math.prod(shape), device=prototype.device)
    return prototype.new(storage).resize_(*shape)


def _as_tensor(value: Any) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))


def dequantize_tensor(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes -> float32 features, matching :func:`videopool.data.schema.dequantize`."""
    out = torch.empty(codes.shape, dtype=torch.float32)
    return torch.mul(codes, _DEQUANTIZE_SCALE, out=out).add_(_DEQUANTIZE_BIAS)


def collate_videos(items: Sequence[dict], dequantize: bool = True) -> VideoBatch:
    """Stack dataset items into a padded :class:`VideoBatch`.

    Args:
        items: dicts as described in the module docstring; all with the same feature names
            and label width. ``None`` items (bad records skipped by a map-style dataset)
            are left out.
        dequantize: turn uint8 frames into float32 features (default). With ``False``
            uint8 frames stay uint8 (padding bytes 0; use the mask).
    """
    # Bad records a streaming dataset reports (report_errors=True) ride along in ``extra``; an item holding
    # only them is no video. ``None`` items are bad records skipped by a map-style dataset.
    bad_records = [error for item in items if item is not None for error in item.get(BAD_RECORDS_KEY, ())]
    items = [item for item in items if item is not None and "frames" in item]
    if not items:
        if bad_records:
            return empty_batch(bad_records)
        raise ValueError("collate_videos needs at least one item (every item of this batch was None, "
                         "i.e. a bad record skipped with on_error='skip')")
    names = list(items[0]["frames"])
    for item in items:
        if list(item["frames"]) != names:
            raise ValueError(f"video {item['id']!r} has features {list(item['frames'])}, "
                             f"but the first video of the batch has {names}")
    lengths = [int(_as_tensor(item["frames"][names[0]]).shape[0]) for item in items]
    batch_size, max_len = len(items), max(lengths, default=0)
    mask = torch.arange(max_len)[None, :] < torch.tensor(lengths)[:, None]

    frames: dict[str, torch.Tensor] = {}
    for name in names:
        rows = [_as_tensor(item["frames"][name]) for item in items]
        for item, row, length in zip(items, rows, lengths):
            if row.shape[0] != length:
                raise ValueError(f"video {item['id']!r}: feature {name!r} has {row.shape[0]} selected frames, "
                                 f"feature {names[0]!r} has {length}")
        decode = rows[0].dtype == torch.uint8 and dequantize
        # One pass over the batch memory: fill real rows, zero only the padding rows.
        padded = _empty((batch_size, max_len, rows[0].shape[-1]), torch.float32 if decode else rows[0].dtype)
        for i, row in enumerate(rows):
            length = row.shape[0]
            if decode:
                torch.mul(row, _DEQUANTIZE_SCALE, out=padded[i, :length]).add_(_DEQUANTIZE_BIAS)
            else:
                padded[i, :length] = row
            padded[i, length:] = 0
        frames[name] = padded

    labels = torch.stack([_as_tensor(item["labels"]).to(torch.float32) for item in items])
    segments = [item.get("segments") for item in items]
    extra = {BAD_RECORDS_KEY: bad_records} if bad_records else {}
    cut = [(item["id"], item[FRAMES_IN_RECORD]) for item in items if FRAMES_IN_RECORD in item]
    if cut:  # videos longer than the frame cap: (id, frames in the record), for make_loader to report
        extra[FRAMES_IN_RECORD] = cut
    return VideoBatch(
        ids=[item["id"] for item in items],
        frames=frames,
        mask=mask,
        num_frames=torch.tensor([int(item["num_frames"]) for item in items], dtype=torch.int64),
        labels=labels,
        segments=segments if any(s is not None for s in segments) else None,
        extra=extra,
    )


def empty_batch(bad_records: list) -> VideoBatch:
    """A batch of no video that only carries bad records (``make_loader`` drops it after counting them)."""
    return VideoBatch(ids=[], frames={}, mask=torch.zeros(0, 0, dtype=torch.bool),
                      num_frames=torch.zeros(0, dtype=torch.int64), labels=torch.zeros(0, 0),
                      extra={BAD_RECORDS_KEY: bad_records})


def dequantize_batch(batch: VideoBatch) -> VideoBatch:
    """Dequantize the uint8 frames of a batch made with ``collate_videos(..., dequantize=False)``.

    Meant for after the transfer to the accelerator: DataLoader workers then ship 4x fewer
    bytes. Padding rows become exact zeros; float frames are left as they are.
    """
    frames = {}
    for name, value in batch.frames.items():
        if value.dtype == torch.uint8:
            value = dequantize_tensor(value) if value.device.type == "cpu" else \
                value.to(torch.float32).mul_(_DEQUANTIZE_SCALE).add_(_DEQUANTIZE_BIAS)
            value.masked_fill_(~batch.mask[:, :, None], 0.0)
        frames[name] = value
    return VideoBatch(ids=batch.ids, frames=frames, mask=batch.mask, num_frames=batch.num_frames,
                      labels=batch.labels, segments=batch.segments, extra=batch.extra)
