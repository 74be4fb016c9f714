"""A video longer than the frame cap is read up to the cap, and the loader says so: one warning per data option
in a process, and a count per pass (``cut_videos``)."""

import warnings

import numpy as np
import pytest

from videopool.data import Video, make_loader, write_videos
from videopool.data import loader as loader_module
from videopool.data.schema import Schema


@pytest.fixture
def lengths_file(tmp_path):
    schema = Schema.yt8m_frame()
    videos = [Video(f"v{n}", [0], {"rgb": np.zeros((n, 1024), np.uint8), "audio": np.zeros((n, 128), np.uint8)})
              for n in (5, 350, 20, 400)]
    path = tmp_path / "lengths.tfrecord"
    write_videos(path, videos, schema=schema)
    return str(path)


@pytest.mark.parametrize("strategy, num_frames, cut, cap", [("all", 300, 2, 300), ("all", 10, 3, 10),
                                                            ("random", 8, 2, 300), ("all", 500, 2, 300)])
def test_videos_cut_at_the_cap_are_counted_and_warned_once(lengths_file, monkeypatch, strategy, num_frames, cut,
                                                          cap):
    monkeypatch.setattr(loader_module, "_WARNED_CUTS", set())
    loader = make_loader(lengths_file, num_classes=2, batch_size=2, strategy=strategy, num_frames=num_frames,
                         shuffle=False, workers=0, what="--data")
    with pytest.warns(RuntimeWarning, match=f"more than the cap of {cap}: only its first {cap} are read") as caught:
        batches = list(loader)
    assert len([w for w in caught if "cap" in str(w.message)]) == 1
    assert loader.cut_videos == cut and loader.frame_cap == cap
    if strategy == "all":
        assert max(int(b.mask.sum(1).max()) for b in batches) == min(cap, 400)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second pass counts again, without a second warning
        list(loader)
    assert loader.cut_videos == cut
