"""benchmarks/ablations.py without training: seeds statistics, tie verdicts, the cache and the kept hand-written part."""

import json
import os
import statistics
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))

import ablation_report as report  # noqa: E402
import ablations  # noqa: E402


def test_stat_is_mean_and_sample_std():
    values = [0.31, 0.29, 0.35]
    s = report.stat(values)
    assert s.mean == pytest.approx(statistics.fmean(values)) and s.n == 3
    assert s.std == pytest.approx(statistics.stdev(values))
    assert report.stat([0.3]).std is None and report.fmt(report.stat([0.3])) == "0.3000"
    assert report.fmt(s) == f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


@pytest.mark.parametrize("a, b, relation, expected", [
    ([0.40, 0.41, 0.42], [0.30, 0.31, 0.32], ">", "holds"),
    ([0.30, 0.31, 0.32], [0.40, 0.41, 0.42], ">", "does not hold: reversed"),
    ([0.30, 0.34, 0.32], [0.31, 0.35, 0.29], ">", "tie (within seed spread)"),
    ([0.30, 0.34, 0.32], [0.31, 0.35, 0.29], "≈", "holds: tie within seed spread"),
    ([0.20, 0.21, 0.22], [0.30, 0.31, 0.32], "≈", "does not hold: first row lower"),
    ([0.40], [0.30], ">", "holds (single seed, no spread)"),
])
def test_verdicts(a, b, relation, expected):
    claim = report.Claim("c", "a", "b", relation)
    assert report.verdict(claim, report.stat(a), report.stat(b)) == expected


def test_a_difference_just_below_the_spread_is_a_tie_and_just_above_is_not():
    a, b = report.stat([0.0, 0.2]), report.stat([0.1, 0.1])  # std_a = sqrt(0.02), std_b = 0
    noise = report.spread(a, b)
    assert noise == pytest.approx(0.02 ** 0.5)
    claim = report.Claim("c", "a", "b")
    shifted = report.Stat(b.mean + 0.99 * noise, a.std, 2)
    assert report.verdict(claim, shifted, b).startswith("tie")
    assert report.verdict(claim, report.Stat(b.mean + 1.01 * noise, a.std, 2), b) == "holds"


def test_kept_tail_keeps_the_hand_written_part(tmp_path):
    path = tmp_path / "results.md"
    assert report.kept_tail(str(path)) == report.MARKER + "\n"
    path.write_text("generated\n<!-- analysis -->\n## mine\ntext\n")
    assert report.kept_tail(str(path)) == report.MARKER + "\n## mine\ntext\n"  # the old marker is renamed
    path.write_text("generated\n" + report.MARKER + "\n## theirs\n")
    assert report.kept_tail(str(path)) == report.MARKER + "\n## theirs\n"


def _result(gap, seed, **extra):
    return {"gap": gap, "hit_at_1": 0.4, "perr": 0.3, "map": 0.2, "parameters": 1000, "videos_per_s": 100.0,
            "seconds": 1.0, "epochs": 4, "num_frames": 64, "lr": 0.003, "batch_size": 80, "seed": seed,
            "peak_rss_mb": 900.0, **extra}


def test_the_flat_cache_of_earlier_versions_is_read_as_seed_zero(tmp_path):
    path = tmp_path / "cache.json"
    old = _result(0.3, 0)
    del old["batch_size"], old["seed"]
    path.write_text(json.dumps({"netvlad_128": old, "_peak_rss_gb": 2.5}))
    cache = ablations.load_cache(str(path))
    assert cache["_peak_rss_gb"] == 2.5 and list(cache["runs"]) == ["netvlad_128"]
    assert cache["runs"]["netvlad_128"]["0"] == {**old, "batch_size": 80, "seed": 0}
    args = ablations.parse_args(["--epochs", "4", "--seeds", "3"])
    assert ablations.same_budget(cache["runs"]["netvlad_128"]["0"], args)
    assert not ablations.same_budget(cache["runs"]["netvlad_128"]["0"], ablations.parse_args(["--epochs", "5"]))


def test_rows_with_the_same_small_network_share_runs_and_variants_do_not():
    assert ablations.signature("soft_dbow_4096") == ablations.signature("soft_dbow_8000")
    assert ablations.signature("nl_paper_soft_bof_4000") != ablations.signature("nl_paper_soft_bof_8000")
    assert ablations.signature("mix_nextvlad_3x_k112_g8_no_kl") != ablations.signature("mix_nextvlad_3x_k112_g8")
    args = ablations.parse_args(["--epochs", "4"])
    cache = {"runs": {"soft_dbow_4096": {"0": _result(0.22, 0)}}}
    signatures = {n: ablations.signature(n) for n in ("soft_dbow_4096", "soft_dbow_8000", "nl_paper_gru_2x1200")}
    shared = ablations.cached_or_shared(cache, "soft_dbow_8000", 0, args, signatures)
    assert shared["gap"] == 0.22 and shared["same_as"] == "soft_dbow_4096"
    assert ablations.cached_or_shared(cache, "soft_dbow_8000", 1, args, signatures) is None  # other seed
    assert ablations.cached_or_shared(cache, "nl_paper_gru_2x1200", 0, args, signatures) is None
    other_budget = ablations.parse_args(["--epochs", "8"])
    assert ablations.cached_or_shared(cache, "soft_dbow_4096", 0, other_budget, signatures) is None


def test_report_from_the_cache_shows_error_bars_ties_and_keeps_the_tail(tmp_path):
    out, cache_path = tmp_path / "results.md", tmp_path / "cache.json"
    out.write_text("old table\n" + report.MARKER + "\n## Appended by someone else\nkept\n")
    runs = {"nl_netvlad_128": {str(s): _result(g, s) for s, g in enumerate([0.30, 0.32, 0.31])},
            "netvlad_128": {str(s): _result(g, s) for s, g in enumerate([0.305, 0.29, 0.315])},
            "gated_netvlad_256": {"0": _result(0.31, 0), "1": _result(0.9, 1, epochs=8)}}  # seed 1: other budget
    cache_path.write_text(json.dumps({"runs": runs, "_peak_rss_gb": 1.0}))
    ablations.main(["--report-only", "--seeds", "3", "--epochs", "4", "--cache", str(cache_path),
                    "--out", str(out)])
    text = out.read_text()
    assert "old table" not in text and text.endswith(report.MARKER + "\n## Appended by someone else\nkept\n")
    assert "| `nl_netvlad_128` | – | 3 | 0.3100 ± 0.0100 |" in text
    assert "| `gated_netvlad_256` | 83.2 | 1 | 0.3100 |" in text  # the other budget's run is not mixed in
    claim = next(line for line in text.splitlines() if line.startswith("| non-local > vanilla NetVLAD"))
    assert claim.endswith("| tie (within seed spread) |")
