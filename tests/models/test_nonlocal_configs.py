"""The named configurations of Tang et al. 2018 (non-local NetVLAD): parameter counts and structure."""

import pytest

from videopool.models import count_parameters, create_model, get_named_config

# nl_netvlad_128: spec §6.2 (NetVLAD 128/64 + hidden 1024 + CG + MoE-2 with prob gating = 178,643,132, plus one
# non-local block per stream 4·1024·128 + 4·128·64 = 557,056). The others follow from the same layers: NetRVLAD
# drops the centroids (1024·128 + 128·64); the paper's Table 1 models have K = 64 and 8 / 4 / 2 mixtures.
COUNTS = [
    ("nl_netvlad_128", 179_200_188),
    ("nl_netrvlad_128", 179_200_188 - 1024 * 128 - 128 * 64),
    ("nl_netvlad_64_moe8", 154_958_464),
    ("nl_netrvlad_64_moe4", 123_235_880),
    ("nl_netvlad_64_early", 111_697_852),
]


@pytest.mark.parametrize("name, expected", COUNTS)
def test_parameter_counts(name, expected):
    assert count_parameters(create_model(name, num_classes=3862, device="meta")) == expected


def test_the_spec_decomposition_of_nl_netvlad_128():
    model = create_model("nl_netvlad_128", device="meta")
    nonlocal_params = sum(p.numel() for name, p in model.named_parameters() if "nonlocal_blocks" in name)
    assert nonlocal_params == 4 * 1024 * 128 + 4 * 128 * 64 == 557_056
    assert count_parameters(model) - nonlocal_params == count_parameters(
        create_model("netvlad_128_cg_pooling_moe", device="meta")) == 178_643_132


def test_structure_of_the_early_and_late_variants():
    early = create_model("nl_netvlad_64_early", device="meta")
    assert list(early.poolings) == ["rgb_audio"] and early.poolings["rgb_audio"].pooling.feature_size == 1152
    late = create_model("nl_netrvlad_64_moe4", device="meta")
    assert late.poolings["audio"].pooling.cluster_size == 32 and late.poolings["rgb"].pooling.cluster_weights2 is None
    assert late.classifier.num_mixtures == 4 and late.classifier.prob_gating is not None
    for name, stream in (("nl_netvlad_128", "rgb"), ("nl_netvlad_64_early", "rgb_audio")):
        entry = get_named_config(name)
        assert "Tang" in entry.paper and entry.recipe["learning_rate"] == 0.0002
        pooling = create_model(name + "_small", device="meta").poolings[stream].pooling
        assert pooling.nonlocal_blocks[0].value_weights == "g" and pooling.intra_norm == "after_block"
