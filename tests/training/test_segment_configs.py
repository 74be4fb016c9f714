"""The named segment configurations (videopool/configs/segments): each parses strictly and builds a model that
runs; the context-aware ones train the segment encoder at half the rate (seed 004 §4.2.1, CESHINE)."""

from __future__ import annotations

import pytest
import torch

from videopool.models import create_model
from videopool.models.segment import SegmentModelConfig, segment_model_from_config
from videopool.training.segments import SegmentTrainConfig, list_segment_configs, named_segment_config


@pytest.mark.parametrize("name", list_segment_configs())
def test_named_segment_config_builds_a_working_model(name):
    named = named_segment_config(name)
    assert named["description"]
    recipe = SegmentTrainConfig.from_dict({**named["recipe"], "model": name})
    assert recipe.context == 3
    video = create_model("gated_netvlad_256_small", num_classes=5, cluster_size=2, **{"hidden.size": 8},
                         modalities={"rgb": 8, "audio": 4})
    config = SegmentModelConfig.from_dict({**named["model"], "video": video.config.to_dict(), "fc_size": 8})
    model = segment_model_from_config(config).eval()
    frames = {"rgb": torch.randn(2, 11, 8), "audio": torch.randn(2, 11, 4)}
    mask = torch.ones(2, 11, dtype=torch.bool)
    out = model(frames, mask, frames, mask)
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    if config.segment_model == "context_aware":
        assert config.segment_lr_scale == 0.5 and model.needs_video_context


def test_ceshine_recipes_mine_negatives_and_weigh_ratings_as_its_code():
    for name in ("ceshine_context_agnostic", "ceshine_context_aware"):
        recipe = named_segment_config(name)["recipe"]
        assert recipe["mined_negatives"] and recipe["mined_weight"] == 0.5
        assert (recipe["positive_weight"], recipe["negative_weight"]) == (1.5, 0.5)  # y + 0.5 (spec P25)
    assert not named_segment_config("paper_context_ignoring")["recipe"].get("mined_negatives", False)
