"""Average and max pooling over real frames."""

import numpy as np
import torch

from tests.layers import reference as ref
from videopool.layers import SimplePooling, create_pooling


def AveragePooling(size):
    return SimplePooling(size, "mean")


def MaxPooling(size):
    return SimplePooling(size, "max")


def _data(seed=0):
    generator = torch.Generator().manual_seed(seed)
    videos = ref.random_videos([3, 1, 6], 4, generator)
    return videos, *ref.pad_videos(videos, 8, generator, garbage=100.0)


def test_average_and_max_match_reference_and_ignore_padding():
    videos, frames, mask = _data()
    np.testing.assert_allclose(AveragePooling(4)(frames, mask).numpy(), np.stack(ref.average(videos)), rtol=1e-12)
    np.testing.assert_allclose(MaxPooling(4)(frames, mask).numpy(), np.stack(ref.maximum(videos)), rtol=1e-12)


def test_negative_features_are_not_beaten_by_padding():
    frames = -torch.ones(1, 3, 2)
    frames[0, 2] = 0.0  # zero padding would win a naive max
    mask = torch.tensor([[True, True, False]])
    assert torch.equal(MaxPooling(2)(frames, mask), -torch.ones(1, 2))


def test_video_without_frames_gives_zero_and_no_mask_means_all_frames():
    frames = torch.randn(2, 3, 2)
    mask = torch.tensor([[True, True, True], [False, False, False]])
    for layer in (AveragePooling(2), MaxPooling(2)):
        out = layer(frames, mask)
        assert torch.equal(out[1], torch.zeros(2))
        torch.testing.assert_close(out[0], layer(frames[:1])[0])
    assert AveragePooling(2).output_size == 2 and MaxPooling(7).output_size == 7


def test_average_and_max_are_one_class_registered_twice():
    assert create_pooling("average", feature_size=3).statistic == "mean"
    assert create_pooling("max", feature_size=3).statistic == "max"
    assert type(create_pooling("average", feature_size=3)) is type(create_pooling("max", feature_size=3))
