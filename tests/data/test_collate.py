import numpy as np
import pytest
import torch

from videopool.data.collate import collate_videos, dequantize_batch, dequantize_tensor
from videopool.data.schema import dequantize
from videopool.data.video import SegmentAnnotations


def make_item(video_id, lengths, num_classes=5, labels=(), dtype=torch.float32, seed=0, segments=None):
    generator = torch.Generator().manual_seed(seed)
    frames = {}
    for name, (n, d) in lengths.items():
        if dtype == torch.uint8:
            frames[name] = torch.randint(0, 256, (n, d), dtype=torch.uint8, generator=generator)
        else:
            frames[name] = torch.randn(n, d, generator=generator)
    target = torch.zeros(num_classes)
    target[list(labels)] = 1.0
    return {"id": video_id, "frames": frames, "num_frames": max(n for n, _ in lengths.values()) + 10,
            "labels": target, "segments": segments}


def test_pads_to_batch_max_with_exact_zeros_and_masks_real_rows():
    items = [make_item("a", {"rgb": (3, 4), "audio": (3, 2)}, labels=[1], seed=1),
             make_item("b", {"rgb": (5, 4), "audio": (5, 2)}, labels=[0, 4], seed=2),
             make_item("c", {"rgb": (1, 4), "audio": (1, 2)}, seed=3)]
    batch = collate_videos(items)
    assert batch.ids == ["a", "b", "c"]
    assert batch.frames["rgb"].shape == (3, 5, 4) and batch.frames["audio"].shape == (3, 5, 2)
    assert batch.mask.tolist() == [[True] * 3 + [False] * 2, [True] * 5, [True] + [False] * 4]
    for i, item in enumerate(items):
        for name, frames in item["frames"].items():
            n = frames.shape[0]
            assert torch.equal(batch.frames[name][i, :n], frames)
            assert torch.count_nonzero(batch.frames[name][i, n:]) == 0
    assert batch.labels.tolist() == [[0, 1, 0, 0, 0], [1, 0, 0, 0, 1], [0, 0, 0, 0, 0]]
    assert batch.labels.dtype == torch.float32
    assert batch.num_frames.tolist() == [13, 15, 11] and batch.num_frames.dtype == torch.int64
    assert batch.segments is None


def test_masked_mean_is_unchanged_by_padding():
    items = [make_item("a", {"rgb": (2, 3)}, seed=4), make_item("b", {"rgb": (7, 3)}, seed=5)]
    batch = collate_videos(items)
    mask = batch.mask[:, :, None].float()
    pooled = (batch.frames["rgb"] * mask).sum(1) / mask.sum(1)
    for i, item in enumerate(items):
        torch.testing.assert_close(pooled[i], item["frames"]["rgb"].mean(0))


def test_uint8_frames_are_dequantized_bit_identically_and_padding_is_zero():
    items = [make_item("a", {"rgb": (2, 6)}, dtype=torch.uint8, seed=6),
             make_item("b", {"rgb": (4, 6)}, dtype=torch.uint8, seed=7)]
    batch = collate_videos(items)
    assert batch.frames["rgb"].dtype == torch.float32
    expected = dequantize(items[0]["frames"]["rgb"].numpy())
    assert np.array_equal(batch.frames["rgb"][0, :2].numpy(), expected)
    assert torch.count_nonzero(batch.frames["rgb"][0, 2:]) == 0
    kept = collate_videos(items, dequantize=False)
    assert kept.frames["rgb"].dtype == torch.uint8
    assert torch.equal(kept.frames["rgb"][1], items[1]["frames"]["rgb"])
    later = dequantize_batch(kept)  # e.g. after moving the uint8 batch to the GPU
    assert torch.equal(later.frames["rgb"], batch.frames["rgb"]) and torch.equal(later.mask, batch.mask)


def test_dequantize_tensor_matches_numpy_decoder_for_every_code():
    codes = torch.arange(256, dtype=torch.uint8)
    assert np.array_equal(dequantize_tensor(codes).numpy(), dequantize(codes.numpy()))


def test_numpy_frames_and_segments_are_accepted():
    segments = SegmentAnnotations(labels=np.array([2]), start_times=np.array([30]), scores=np.array([1.0], np.float32))
    item = {"id": "x", "frames": {"rgb": np.ones((2, 3), np.float32)}, "num_frames": 2,
            "labels": np.array([0, 0, 1], np.float32), "segments": segments}
    other = make_item("y", {"rgb": (1, 3)}, num_classes=3)
    batch = collate_videos([item, other])
    assert batch.frames["rgb"][0].tolist() == [[1, 1, 1], [1, 1, 1]]
    assert batch.segments[0] is segments and batch.segments[1] is None


def test_mismatched_features_name_the_video():
    with pytest.raises(ValueError, match="'b'"):
        collate_videos([make_item("a", {"rgb": (2, 3)}), make_item("b", {"audio": (2, 3)})])
    bad = make_item("c", {"rgb": (2, 3), "audio": (3, 1)})
    with pytest.raises(ValueError, match="'c'"):
        collate_videos([bad])
