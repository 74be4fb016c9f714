"""The named configurations of Kmiec, Bae & An 2018 (seed 001, Table 1): parameter counts, structure, export."""

import pytest

from videopool.models import count_parameters, create_model, get_named_config

# kmiec_baseline_netvlad_256 is WILLOW's gated NetVLAD at V = 3862 (spec §6.1). The spec's §6.2 count of POMONAM's
# prototype 1 (161,907,116) is the attention-enhanced model with the released encoder, no attention batch norm and
# no frame encoder; the named config is the paper's model: + a frame encoder per stream, attention BN (2h + 2D per
# encoder) and the paper's encoder (one LayerNorm fewer: −2D per encoder).
P1_SPEC = 161_907_116
COUNTS = [
    ("kmiec_baseline_netvlad_256", 321_528_380),
    # per stream: a second encoder (12D² + 6D + 4D LayerNorms + 2h + 2D BNs), and the first one's −2D + 2h + 2D
    ("attention_enhanced_netvlad_256", P1_SPEC + (12 * 1024**2 + 12 * 1024 + 2 * 64) + 2 * 64
     + (12 * 128**2 + 12 * 128 + 2 * 16) + 2 * 16),
    ("attention_netvlad_256", 171_257_996),
    ("second_order_netvlad_256", 192_634_412),
]


@pytest.mark.parametrize("name, expected", COUNTS)
def test_parameter_counts(name, expected):
    assert count_parameters(create_model(name, num_classes=3862, device="meta")) == expected


def test_the_released_prototype_1_has_the_spec_count():
    released = {"pooling.options.frame_encoder": False, "pooling.options.encoder": "released",
                "pooling.options.attention_batch_norm": False}
    model = create_model("attention_enhanced_netvlad_256", device="meta", **released)
    assert count_parameters(model) == P1_SPEC
    encoders = sum(p.numel() for name, p in model.named_parameters() if "cluster_encoder" in name)
    assert encoders == 12_595_200 + 198_144  # spec §6.2: video and audio encoders
    hidden = sum(p.numel() for name, p in model.named_parameters() if name.startswith("hidden."))
    assert hidden == 138_412_544


def test_attention_netvlad_decomposition():
    model = create_model("attention_netvlad_256", device="meta")
    video = model.poolings["rgb"].pooling
    d, k, h = 1024, 256, 64
    frame = 12 * d * d + 6 * d + 4 * d + 2 * h + 2 * d
    similarity = 4 * d * d + d + 2 * h + 2 * d + 2 * d + d * 4 * d + 4 * d + 8 * d + 4 * d * k + k + 2 * k
    assert count_parameters(video) == d * k + frame + similarity


def test_second_order_decomposition():
    model = create_model("second_order_netvlad_256", device="meta")
    video, audio = model.poolings["rgb"].pooling, model.poolings["audio"].pooling
    assert video.output_size == 1024 * 256 + 16 * 16 * 256 and audio.output_size == 128 * 64 + 16 * 16 * 64
    d, k, p = 1024, 256, 16
    assert count_parameters(video) == 2 * d * k + 2 * k + d * d + d * k + d * p + 2 * p * k + 2 * k + p**4 + p * p * k


def test_structure_and_recipes():
    model = create_model("attention_enhanced_netvlad_256", device="meta")
    video, audio = model.poolings["rgb"].pooling, model.poolings["audio"].pooling
    assert video.cluster_size == 256 and audio.cluster_size == 64  # POMONAM: audio K/4 (spec P16)
    assert video.frame_encoder.attention.num_heads == 64 and audio.cluster_encoder.attention.num_heads == 16
    assert model.poolings["audio"].pooling.frame_encoder.attention.logits_bn is not None
    assert create_model("attention_netvlad_256", device="meta").poolings["audio"].pooling.similarity_encoder \
        .attention.num_heads == 8
    for name, batch, steps in (("attention_enhanced_netvlad_256", 64, 270_000), ("attention_netvlad_256", 64, 220_000),
                               ("second_order_netvlad_256", 32, 270_000), ("kmiec_baseline_netvlad_256", 80, 270_000)):
        entry = get_named_config(name)
        assert "Kmiec" in entry.paper and entry.reported["num_classes"] == 3862
        assert entry.recipe["batch_size"] == batch and entry.recipe["max_steps"] == steps
    assert get_named_config("attention_netvlad_256").recipe["frame_selection"] == "uniform"


@pytest.mark.parametrize("name", ["attention_enhanced_netvlad_256_small", "attention_netvlad_256_small",
                                  "second_order_netvlad_256_small"])
def test_small_twins_are_small(name):
    assert count_parameters(create_model(name, num_classes=3862, device="meta")) < 7_000_000


TINY = {"modalities": {"rgb": 16, "audio": 8}, "hidden.size": 8}


@pytest.mark.parametrize("name, overrides", [
    ("attention_enhanced_netvlad_256_small", {"pooling.options.frame_encoder": True, "pooling.options.num_heads": 2,
                                              "pooling.per_modality": {}}),
    ("attention_netvlad_256_small", {"pooling.options.num_heads": 2,
                                     "pooling.per_modality": {}}),
    ("second_order_netvlad_256_small", {"pooling.options.projection_size": 3}),
    ("attention_netvlad_256_small", {"pooling.type": "attention_clusters", "pooling.options": {},
                                     "pooling.per_modality": {}}),
])
def test_export_model_runs_each_pooling(tmp_path, name, overrides):
    from tests.export_check import assert_exports_like_the_model

    assert_exports_like_the_model(create_model(name, num_classes=7, cluster_size=4, **TINY, **overrides), tmp_path)
