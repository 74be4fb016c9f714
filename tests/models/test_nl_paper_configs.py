"""The Soft-BoF and GRU members of Tang et al. 2018 (non-local NetVLAD system): parameter counts and structure.

The paper publishes no parameter counts for these models, only a "model size" per Table 1 model. The counts
below are the arithmetic of the layer sizes (V = 3862, H = 1024, 2 mixtures), written out term by term.
"""

import pytest

from videopool.models import count_parameters, create_model, get_named_config

V = 3862
INPUT_BN = 2 * 1152


def soft_bof(video_clusters: int, audio_clusters: int, hidden: int = 1024, mixtures: int = 2) -> int:
    video = 1024 * video_clusters + 2 * video_clusters  # cluster weights (no bias) + cluster BN
    audio = 128 * audio_clusters + 2 * audio_clusters
    fc = (video_clusters + audio_clusters) * hidden + hidden  # hidden FC with bias, no BN
    moe = hidden * V * (mixtures + 1) + hidden * V * mixtures + V * mixtures  # gates (no bias) + experts
    return INPUT_BN + video + audio + fc + moe


def gru(cells: int = 1200, mixtures: int = 2) -> int:
    layer1 = (1152 + cells) * 3 * cells + 3 * cells  # TF GRUCell: one kernel and one bias per gate block
    layer2 = (cells + cells) * 3 * cells + 3 * cells
    state = 2 * cells  # final states of both layers
    moe = state * V * (mixtures + 1) + state * V * mixtures + V * mixtures
    return layer1 + layer2 + moe  # no input batch norm


COUNTS = [
    ("nl_paper_soft_bof_4000", soft_bof(4000, 500), 28_561_492),
    ("nl_paper_soft_bof_8000", soft_bof(8000, 1000), 37_338_492),
    ("nl_paper_gru_2x1200", gru(1200), 63_466_124),
]


@pytest.mark.parametrize("name, arithmetic, written", COUNTS)
def test_parameter_count_is_the_arithmetic_of_the_layer_sizes(name, arithmetic, written):
    assert arithmetic == written  # the figure docs/models.md states
    assert count_parameters(create_model(name, num_classes=V, device="meta")) == arithmetic


# Table 1 "model size" of all six members (MB of a float32 TF checkpoint). Our float32 size of each is at most the
# paper's and within 2 %: the checkpoint adds BN moving statistics and graph metadata to the weights. The test
# also pins the cluster counts: 4096/512 clusters (109.8 MiB) or 8192/1024 (144.0 MiB) would exceed the
# paper's 109 and 143.
PAPER_SIZES_MIB = [
    ("nl_netvlad_64_moe8", 593), ("nl_netvlad_64_early", 427), ("nl_netrvlad_64_moe4", 478),
    ("nl_paper_soft_bof_4000", 109), ("nl_paper_soft_bof_8000", 143), ("nl_paper_gru_2x1200", 243),
]


@pytest.mark.parametrize("name, paper_mib", PAPER_SIZES_MIB)
def test_float32_size_is_just_below_the_papers_model_size(name, paper_mib):
    mib = 4 * count_parameters(create_model(name, num_classes=V, device="meta")) / 2**20
    assert 0.98 * paper_mib < mib <= paper_mib
    assert 4 * soft_bof(4096, 512) / 2**20 > 109 and 4 * soft_bof(8192, 1024) / 2**20 > 143


def test_structure_differs_from_willow_where_the_paper_does():
    for name, willow in (("nl_paper_soft_bof_4000", "soft_dbow_4096"), ("nl_paper_gru_2x1200", "gru_2x1200")):
        model = create_model(name, device="meta")
        assert model.classifier.num_mixtures == 2 and model.classifier.prob_gating is None
        assert model.classifier.l2_penalty == 1e-8  # the run scripts never reach the 1e-6 of WILLOW's commands
        assert create_model(willow, device="meta").classifier.l2_penalty == 1e-6
        entry = get_named_config(name)
        assert "Tang" in entry.paper and entry.recipe["learning_rate"] == 0.0002
        assert entry.recipe["max_steps"] == 300_000  # §3.2: "Training procedures converged around 300k"
    soft = create_model("nl_paper_soft_bof_8000", device="meta")
    assert soft.poolings["rgb"].pooling.cluster_size == 8000 and soft.poolings["audio"].pooling.cluster_size == 1000
    rnn = create_model("nl_paper_gru_2x1200", device="meta")
    assert list(rnn.poolings) == ["rgb_audio"] and rnn.poolings["rgb_audio"].pooling.hidden_size == 1200


def test_small_twins_keep_the_4k_to_8k_ratio():
    small_4k = create_model("nl_paper_soft_bof_4000_small", device="meta").poolings["rgb"].pooling.cluster_size
    small_8k = create_model("nl_paper_soft_bof_8000_small", device="meta").poolings["rgb"].pooling.cluster_size
    assert (small_4k, small_8k) == (32, 64)
