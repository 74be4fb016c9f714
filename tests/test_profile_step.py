"""benchmarks/profile_step.py's attribution (tiny model, one profiled step) and run_all's section rewriting."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))

profile_step = pytest.importorskip("profile_step")
run_all = pytest.importorskip("run_all")


@pytest.mark.slow  # ~13 s on 2 shared cores (profiler start-up dominates)
def test_every_operator_lands_in_a_part_and_the_hidden_fc_flops_match_its_shape():
    from videopool.models import create_model
    from videopool.training.step import TrainStep

    torch.manual_seed(0)
    b, n, v, k = 4, 6, 10, 4
    model = create_model("gated_netvlad_256_small", num_classes=v, cluster_size=k, **{"hidden.size": 8}).train()
    profile_step.add_scopes(model)
    step = TrainStep(model, precision="fp32", device=torch.device("cpu"), learning_rate=1e-3)
    frames = {m: torch.randn(b, n, size) for m, size in model.config.modalities.items()}
    labels = (torch.rand(b, v) < 0.3).float()
    prof, wall = profile_step.profile_once(lambda: step(frames, torch.ones(b, n, dtype=torch.bool), labels))
    parts, ops = profile_step.analyse(prof, {"fp32": 10.0, "bf16": 10.0}, 1.0,
                                      sum(p.numel() for p in step.params))
    expected = {"assignment", "aggregation", "hidden FC", "gating", "MoE head", "loss", "clipping", "optimizer",
                "backward: assignment", "backward: aggregation", "backward: hidden FC", "backward: MoE head"}
    assert expected <= set(parts)
    # self times add up to the time of all aten operators: nothing counted twice or dropped
    total = sum(e.self_cpu_time_total for e in prof.events() if e.name.startswith("aten::")) / 1e3
    assert sum(row["ms"] for row in parts.values()) == pytest.approx(total, rel=1e-9)
    # the hidden FC's forward is one [B, D*K] x [D*K, H] GEMM; its backward needs dX and dW (twice that)
    pooled = sum(pooling.output_size for pooling in model.poolings.values())  # D*K summed over modalities
    assert parts["hidden FC"]["flops"] == 2 * b * pooled * 8
    assert parts["backward: hidden FC"]["flops"] == 2 * parts["hidden FC"]["flops"]
    assert parts["optimizer"]["bytes"] >= 28 * sum(p.numel() for p in step.params)


def test_run_all_replaces_only_its_marked_section():
    doc = "# Title\nhand text\n<!-- generated:a -->\nold\n<!-- /generated:a -->\nmore hand text\n"
    new = run_all.replace_section(doc, "a", "fresh\nlines")
    assert new == "# Title\nhand text\n<!-- generated:a -->\nfresh\nlines\n<!-- /generated:a -->\nmore hand text\n"
    appended = run_all.replace_section(new, "b", "x")
    assert appended.startswith(new.rstrip()) and appended.endswith("<!-- generated:b -->\nx\n<!-- /generated:b -->\n")
