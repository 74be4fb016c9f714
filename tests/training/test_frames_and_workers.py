"""How many frames and which loader processes feed the model: inference frame counts, compile padding, workers."""

from videopool.inference.predict import MAX_FRAMES, inference_num_frames


def test_all_frames_at_inference_ignore_the_training_sample_count():
    # a model trained on 64 random frames is evaluated on every real frame
    assert inference_num_frames("all", None, 64) == MAX_FRAMES == 300
    assert inference_num_frames("uniform", None, 64) == 64
    assert inference_num_frames("random", None, None) == 300
    assert inference_num_frames("all", 120, 64) == 120


def test_static_frame_count_pads_with_masked_frames_and_at_least_two_videos():
    import pytest
    import torch

    from videopool.inference.predict import static_frame_count

    frames = {"rgb": torch.randn(1, 3, 4), "audio": torch.randn(1, 3, 2)}
    mask = torch.tensor([[True, True, False]])
    padded, padded_mask = static_frame_count(frames, mask, 5)
    assert padded["rgb"].shape == (2, 5, 4) and padded["audio"].shape == (2, 5, 2)
    assert padded_mask.tolist() == [[True, True, False, False, False], [False] * 5]
    assert torch.equal(padded["rgb"][0, :3], frames["rgb"][0]) and not padded["rgb"][1:].any()
    with pytest.raises(ValueError, match="more than num_frames=2"):
        static_frame_count(frames, mask, 2)


def test_default_workers_load_in_process_on_two_cpu_cores(monkeypatch):
    import os

    import pytest

    from videopool.data.loader import resolve_workers

    assert resolve_workers(3, "cpu") == 3 and resolve_workers(0, "cuda") == 0
    with pytest.raises(ValueError, match="workers must be >= 0"):
        resolve_workers(-1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert resolve_workers(None, "cpu") == 0
    assert resolve_workers(None, "cuda") == 1  # the main process feeds the GPU; loading goes to a worker
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert resolve_workers(None, "cpu") == 1
