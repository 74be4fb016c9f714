"""The papers' ablation tables, reproduced on the demo data with the small variant of every named config.

Every model gets the same budget (epochs over the same training videos, frames per video, batch,
learning rate); the table in ``docs/results.md`` lists validation GAP@20, hit@1, mAP, trainable
parameters and training throughput beside the GAP the paper reports on YouTube-8M. With ``--seeds N``
every row is trained with seeds ``--seed`` … ``--seed + N − 1`` and the table shows mean ± std; the
generated claims section calls a difference smaller than the seed spread a tie.

    python benchmarks/ablations.py                          # all groups, one seed (~30 min on 2 cores)
    python benchmarks/ablations.py --only nextvlad tang kmiec --seeds 3
    python benchmarks/ablations.py --report-only --seeds 3  # rewrite docs/results.md from the cache

Results are cached per (row, seed) in ``--cache`` (JSON) and reused when they were trained with the
same budget; ``--force`` retrains. Two rows whose small twins are the same network (same model config
and recipe) are trained once per seed and share the result.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ablation_report import MARKER, Claim, claims_section, group_table, kept_tail, stat  # noqa: E402

GROUPS = {
    "table1": ("Miech et al. 2017 (arXiv 1706.06905), Table 1: individual aggregation schemes (late concat)", [
        "avgpool_logistic", "avgpool_moe_cg", "lstm_2x1024", "gru_2x1200", "soft_dbow_4096", "netfv_128",
        "netvlad_256", "gated_soft_dbow_4096", "gated_netfv_128", "gated_netrvlad_256", "gated_netvlad_256"]),
    "table2": ("Miech et al. 2017 (arXiv 1706.06905), Table 2: Context Gating ablation on NetVLAD", [
        "netvlad_128", "netvlad_128_cg_pooling", "netvlad_128_glu_pooling_cg_moe", "netvlad_128_cg_pooling_moe"]),
    "table3": ("Miech et al. 2017 (arXiv 1706.06905), Table 3: early vs late concatenation of audio and video", [
        "netvlad_256_early", "netvlad_256", "netfv_128_early", "netfv_128", "gru_2x1200", "gru_2x1200_late",
        "lstm_2x1024", "lstm_2x1024_late"]),
    "mfb": ("Liu et al. 2018 (arXiv 1809.05848), Tables 1-3: fusion of pooled audio and video (MFB study)", [
        f"mfb_{pool}_{fusion}" for pool in ("avgpool", "dbof", "netvlad")
        for fusion in ("audio_only", "video_only", "concat", "fc_concat", "mfb")]),
    "huang": ("Huang (Stanford report): video-level NetVLAD + FC + gating + MoE", ["huang_netvlad_gating_moe"]),
    "ensemble": ("Miech et al. 2017 (arXiv 1706.06905), Section 8: the remaining member of the 7-model ensemble",
                 ["soft_dbow_8000"]),
    "nextvlad": ("Lin, Xiao & Fan 2018 (arXiv 1811.05014), Tables 1-3: NeXtVLAD against gated NetVLAD, and the "
                 "mixture with and without distillation", [
        "gated_netvlad_256", "nextvlad_k128_g8", "nextvlad_k112_g8_h2048", "mix_nextvlad_3x_k112_g8",
        "mix_nextvlad_3x_k112_g8_no_kl"]),
    "tang": ("Tang et al. 2018 (arXiv 1810.00207), Tables 1-2: non-local NetVLAD against its baselines", [
        "netvlad_128", "nl_netvlad_128", "nl_netrvlad_128", "nl_netvlad_64_moe8", "nl_netrvlad_64_moe4",
        "nl_netvlad_64_early", "nl_paper_soft_bof_4000", "nl_paper_soft_bof_8000", "nl_paper_gru_2x1200",
        "soft_dbow_4096", "soft_dbow_8000", "gru_2x1200"]),
    "kmiec": ("Kmiec et al. 2018 (arXiv 1810.00530), Table 1: attention and second-order variants of NetVLAD", [
        "kmiec_baseline_netvlad_256", "attention_enhanced_netvlad_256", "attention_netvlad_256",
        "second_order_netvlad_256"]),
}

# Rows that are a named config with model overrides: row -> (named config, overrides, how the table names it).
VARIANTS = {
    "mix_nextvlad_3x_k112_g8_no_kl": ("mix_nextvlad_3x_k112_g8", {"mixture.distillation_weight": 0.0},
                                      "`mix_nextvlad_3x_k112_g8` with λ = 0 (no KL term)"),
}

CLAIMS = [
    Claim("non-local > vanilla NetVLAD (Tang et al. §3.3)", "nl_netvlad_128", "netvlad_128"),
    Claim("late > early fusion, non-local NetVLAD (Tang et al. Table 1)", "nl_netvlad_64_moe8",
          "nl_netvlad_64_early"),
    Claim("LFNL-NetVLAD > Soft-BoF-4K (Tang et al. Table 1)", "nl_netvlad_64_moe8", "nl_paper_soft_bof_4000"),
    Claim("LFNL-NetVLAD > GRU (Tang et al. Table 1)", "nl_netvlad_64_moe8", "nl_paper_gru_2x1200"),
    Claim("Soft-BoF-4K ≈ Soft-BoF-8K (Tang et al. Table 1: 85.25 / 85.12)", "nl_paper_soft_bof_4000",
          "nl_paper_soft_bof_8000", "≈"),
    Claim("NeXtVLAD ≥ gated NetVLAD (Lin et al. Table 1)", "nextvlad_k128_g8", "gated_netvlad_256"),
    Claim("mixture of 3 > one branch (Lin et al. Table 2)", "mix_nextvlad_3x_k112_g8", "nextvlad_k112_g8_h2048"),
    Claim("distillation helps the mixture (Lin et al. §3.3)", "mix_nextvlad_3x_k112_g8",
          "mix_nextvlad_3x_k112_g8_no_kl"),
    Claim("attention-enhanced ≈ baseline (Kmiec et al. Table 1)", "attention_enhanced_netvlad_256",
          "kmiec_baseline_netvlad_256", "≈"),
    Claim("attention NetVLAD ≈ baseline (Kmiec et al. Table 1)", "attention_netvlad_256",
          "kmiec_baseline_netvlad_256", "≈"),
    Claim("second-order ≈ baseline (Kmiec et al. Table 1)", "second_order_netvlad_256",
          "kmiec_baseline_netvlad_256", "≈"),
]

BUDGET_KEYS = ("epochs", "num_frames", "lr", "batch_size")  # a cached run is reused only if these match


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="videopool-demo/data", help="demo data dir (made if missing)")
    p.add_argument("--only", nargs="*", choices=sorted(GROUPS), help="groups to run (default: all)")
    p.add_argument("--rows", nargs="*", help="of those groups' rows, train only these (the report shows all)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--num-frames", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=80)
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--seeds", type=int, default=1, help="seeds per row (mean ± std when > 1)")
    p.add_argument("--runs", default="runs/ablations", help="where the runs go")
    p.add_argument("--cache", default="benchmarks/results/ablations.json")
    p.add_argument("--out", default="docs/results.md")
    p.add_argument("--force", action="store_true", help="retrain rows already in the cache")
    p.add_argument("--report-only", action="store_true", help="train nothing; write --out from the cache")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f"--seeds {args.seeds}: give at least 1")
    return args


def ensure_data(path: str) -> None:
    if not glob.glob(os.path.join(path, "train-*.tfrecord")):
        from videopool.demo.dataset import make_demo_data

        make_demo_data(path, seed=0)


def base_and_overrides(row: str) -> tuple[str, dict]:
    base, overrides, _ = VARIANTS.get(row, (row, {}, ""))
    return base, dict(overrides)


def signature(row: str) -> str:
    """What determines a seeded run of ``row`` besides the shared budget: the small twin's model config after the
    row's overrides, and its recipe (``max_steps`` aside: the budget runs by epochs, without a step limit)."""
    from videopool.models import get_named_config
    from videopool.models.overrides import apply_overrides

    base, overrides = base_and_overrides(row)
    entry = get_named_config(f"{base}_small")
    recipe = {k: v for k, v in entry.recipe.items() if k != "max_steps"}
    return json.dumps([apply_overrides(entry.model.to_dict(), overrides), recipe], sort_keys=True, default=str)


def run_model(row: str, seed: int, args: argparse.Namespace) -> dict:
    from videopool.training import train_named_model

    base, model_overrides = base_and_overrides(row)
    data = args.data
    overrides = {
        "train_data": sorted(glob.glob(os.path.join(data, "train-*.tfrecord"))),
        "val_data": sorted(glob.glob(os.path.join(data, "validate-*.tfrecord"))),
        "vocabulary": os.path.join(data, "vocabulary.csv"), "epochs": args.epochs, "max_steps": None,
        "learning_rate": args.lr, "num_frames": args.num_frames, "frame_selection": "random",
        "batch_size": args.batch_size, "seed": seed, "lr_decay_examples": 200_000,
        "checkpoint_every": 0, "progress": False, "model_overrides": model_overrides,
    }
    reset_peak_rss()
    result = train_named_model(f"{base}_small", os.path.join(args.runs, f"{row}-seed{seed}"), overrides)
    m = result["metrics"]
    return {"gap": m["gap"], "hit_at_1": m["hit_at_1"], "perr": m["perr"], "map": m["map"],
            "parameters": result["parameters"], "videos_per_s": result["videos_per_s"],
            "seconds": result["seconds"], "epochs": args.epochs, "num_frames": args.num_frames, "lr": args.lr,
            "batch_size": args.batch_size, "seed": seed, "peak_rss_mb": peak_rss_mb()}


def reset_peak_rss() -> None:
    """Start a new peak-RSS measurement (Linux: writing 5 to clear_refs resets VmHWM), so each model's peak is
    its own and not the sweep's so far."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def load_cache(path: str) -> dict:
    """``{"runs": {row: {seed: result}}, "_peak_rss_gb": x}``; the flat ``{row: result}`` of earlier versions
    (all trained with seed 0 and batch 80) is read as seed 0."""
    if not os.path.isfile(path):
        return {"runs": {}}
    with open(path) as f:
        cache = json.load(f)
    runs = cache.setdefault("runs", {})
    for key in [k for k in cache if k not in ("runs",) and not k.startswith("_")]:
        result = cache.pop(key)
        runs.setdefault(key, {}).setdefault("0", {"batch_size": 80, "seed": 0, **result})
    return cache


def save_cache(cache: dict, path: str) -> None:
    from videopool.core.files import atomic_path

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(cache, f, indent=1)


def same_budget(result: dict, args: argparse.Namespace) -> bool:
    wanted = {"epochs": args.epochs, "num_frames": args.num_frames, "lr": args.lr, "batch_size": args.batch_size}
    return all(result.get(k) == wanted[k] for k in BUDGET_KEYS)


def cached_or_shared(cache: dict, row: str, seed: int, args: argparse.Namespace, signatures: dict) -> dict | None:
    runs = cache["runs"]
    own = runs.get(row, {}).get(str(seed))
    if own is not None and same_budget(own, args):
        return own
    for other, sig in signatures.items():  # the same network trained under another row's name
        found = runs.get(other, {}).get(str(seed))
        if other != row and sig == signatures[row] and found is not None and same_budget(found, args):
            return {**found, "same_as": found.get("same_as", other)}
    return None


def selected(args: argparse.Namespace, cache: dict) -> tuple[list[str], dict[str, dict[str, dict]]]:
    """The rows of the chosen groups and, per row, the cached runs of the requested seeds."""
    groups = args.only or list(GROUPS)
    names = list(dict.fromkeys(n for g in groups for n in GROUPS[g][1]))
    if args.rows:
        unknown = sorted(set(args.rows) - set(names))
        if unknown:
            raise SystemExit(f"--rows {' '.join(unknown)}: not a row of {', '.join(groups)}")
        names = [n for n in names if n in args.rows]
    seeds = [str(s) for s in range(args.seed, args.seed + args.seeds)]
    results = {}
    for name in cache["runs"]:
        runs = {s: r for s, r in cache["runs"][name].items() if s in seeds and same_budget(r, args)}
        if runs:
            results[name] = runs
    return names, results


def labels() -> dict[str, str]:
    return {row: label for row, (_, _, label) in VARIANTS.items()}


def reported_gap(name: str) -> str:
    from videopool.models import get_named_config

    if name in VARIANTS:
        return "–"
    reported = get_named_config(name).reported
    return f"{100 * reported['gap']:.1f}" if reported.get("gap") is not None else "–"


def write_markdown(results: dict[str, dict[str, dict]], args: argparse.Namespace, peak_rss_gb: float) -> None:
    seeds = f"seed {args.seed}" if args.seeds == 1 else f"seeds {args.seed}–{args.seed + args.seeds - 1}"
    flags = sorted({w for w in open("/proc/cpuinfo").read().split() if w in ("amx_bf16", "avx512_bf16")}) \
        if os.path.isfile("/proc/cpuinfo") else []
    lines = [
        "# Results: the papers' ablations on the demo data",
        "",
        "Regenerate with `python benchmarks/ablations.py` (writes this file down to the marker line; what follows",
        "the marker is kept). Every row is the `_small` variant of the named configuration, trained with one",
        f"shared budget: {args.epochs} epochs over the 4,000 demo training videos, {args.num_frames} random frames per",
        f"video (with replacement), batch {args.batch_size}, Adam lr {args.lr:g} (staircase ×0.8 per 200k examples),",
        f"per-tensor clipping 1.0, the TF1 loss, {seeds} (`seeds` column: how many of them a row has; metrics are",
        "mean ± sample std over them); validation on the 1,000 demo validation videos using every real frame.",
        "`paper GAP` is the number the paper reports on YouTube-8M (full-size model, full data) — a reference for",
        "the *ordering*, not a target for the value. Training throughput is end-to-end (data loading included) on",
        f"this machine's 2 cores ({platform.processor() or platform.machine()}; CPU flags: "
        f"{', '.join(flags) or 'neither avx512_bf16 nor amx_bf16'}; `--precision auto`, which is fp32 without AMX),",
        "shared with other jobs (up to ~10× slower when busy), so `train videos/s` is the fastest of a row's",
        "seeds, the closest to a quiet machine, and still varies by several times between rows; peak RSS of the sweep",
        f"{peak_rss_gb:.1f} GB; `peak RSS MB` is each model's own peak over its seeds (– where not measured).",
        "Rows whose small twins are the same network (e.g. `soft_dbow_4096` and `soft_dbow_8000`) are trained",
        "once per seed and share the numbers.",
        "",
    ]
    row_labels = labels()
    reported = {}
    for key, (title, names) in GROUPS.items():
        rows = [n for n in names if n in results]
        if not rows:
            continue
        reported.update({n: reported_gap(n) for n in rows})
        lines += [f"## {title}", ""] + group_table(rows, results, row_labels, reported)
    gaps = {name: stat([r["gap"] for r in runs.values()]) for name, runs in results.items()}
    lines += claims_section(CLAIMS, gaps, row_labels)
    text = "\n".join(lines) + "\n" + kept_tail(args.out)
    from videopool.core.files import atomic_path

    with atomic_path(args.out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.out}")


def main(argv: list[str] | None = None) -> None:
    from videopool.core.malloc import tune_malloc

    tune_malloc()
    args = parse_args(argv)
    cache = {"runs": {}} if args.force else load_cache(args.cache)
    names, _ = selected(args, cache)
    if not args.report_only:
        ensure_data(args.data)
        every_row = dict.fromkeys(n for _, rows in GROUPS.values() for n in rows)
        signatures = {name: signature(name) for name in every_row}  # shares runs across all groups
        todo = [(seed, name) for seed in range(args.seed, args.seed + args.seeds) for name in names]
        for i, (seed, name) in enumerate(todo, 1):  # seed-major: an interrupted sweep has whole seeds
            found = cached_or_shared(cache, name, seed, args, signatures)
            if found is None:
                started = time.perf_counter()
                found = run_model(name, seed, args)
                print(f"[{i}/{len(todo)}] {name:<34} seed {seed}  GAP {found['gap']:.4f}  "
                      f"{found['videos_per_s']:.0f} videos/s  ({time.perf_counter() - started:.0f} s)", flush=True)
            if cache["runs"].get(name, {}).get(str(seed)) != found:
                cache["runs"].setdefault(name, {})[str(seed)] = found
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
                cache["_peak_rss_gb"] = max(cache.get("_peak_rss_gb", 0.0), rss)
                save_cache(cache, args.cache)
    _, results = selected(args, cache)
    write_markdown(results, args, cache.get("_peak_rss_gb", 0.0))


if __name__ == "__main__":
    main()
