"""The papers' ablation tables, reproduced on the demo data with the small variant of every named config.

Every model gets the same budget (epochs over the same training videos, frames per video, batch,
learning rate, seed); the table in ``docs/results.md`` lists validation GAP@20, hit@1, trainable
parameters and training throughput beside the GAP the paper reports on YouTube-8M.

    python benchmarks/ablations.py                       # all groups (~30 min on 2 cores)
    python benchmarks/ablations.py --only table2 --epochs 2

Results are cached per model in ``--cache`` (JSON); ``--force`` retrains.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import resource
import time

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
    "nextvlad": ("Lin, Xiao & Fan 2018 (arXiv 1811.05014), Tables 1-2: NeXtVLAD against gated NetVLAD, and the "
                 "mixture with distillation", [
        "gated_netvlad_256", "nextvlad_k128_g8", "nextvlad_k112_g8_h2048", "mix_nextvlad_3x_k112_g8"]),
    "tang": ("Tang et al. 2018 (arXiv 1810.00207), Tables 1-2: non-local NetVLAD against its baselines", [
        "netvlad_128", "nl_netvlad_128", "nl_netrvlad_128", "nl_netvlad_64_moe8", "nl_netrvlad_64_moe4",
        "nl_netvlad_64_early", "soft_dbow_4096", "soft_dbow_8000", "gru_2x1200"]),
    "kmiec": ("Kmiec et al. 2018 (arXiv 1810.00530), Table 1: attention and second-order variants of NetVLAD", [
        "kmiec_baseline_netvlad_256", "attention_enhanced_netvlad_256", "attention_netvlad_256",
        "second_order_netvlad_256"]),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="videopool-demo/data", help="demo data dir (made if missing)")
    p.add_argument("--only", nargs="*", choices=sorted(GROUPS), help="groups to run (default: all)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--num-frames", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=80)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default="runs/ablations", help="where the runs go")
    p.add_argument("--cache", default="benchmarks/results/ablations.json")
    p.add_argument("--out", default="docs/results.md")
    p.add_argument("--force", action="store_true", help="retrain models already in the cache")
    return p.parse_args()


def ensure_data(path: str) -> None:
    if not glob.glob(os.path.join(path, "train-*.tfrecord")):
        from videopool.demo.dataset import make_demo_data

        make_demo_data(path, seed=0)


def run_model(name: str, args: argparse.Namespace) -> dict:
    from videopool.training import train_named_model

    data = args.data
    overrides = {
        "train_data": sorted(glob.glob(os.path.join(data, "train-*.tfrecord"))),
        "val_data": sorted(glob.glob(os.path.join(data, "validate-*.tfrecord"))),
        "vocabulary": os.path.join(data, "vocabulary.csv"), "epochs": args.epochs,
        "learning_rate": args.lr, "num_frames": args.num_frames, "frame_selection": "random",
        "batch_size": args.batch_size, "seed": args.seed, "lr_decay_examples": 200_000,
        "checkpoint_every": 0, "progress": False,
    }
    reset_peak_rss()
    result = train_named_model(f"{name}_small", os.path.join(args.runs, name), overrides)
    m = result["metrics"]
    return {"gap": m["gap"], "hit_at_1": m["hit_at_1"], "perr": m["perr"], "map": m["map"],
            "parameters": result["parameters"], "videos_per_s": result["videos_per_s"],
            "seconds": result["seconds"], "epochs": args.epochs, "num_frames": args.num_frames, "lr": args.lr,
            "peak_rss_mb": peak_rss_mb()}


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


def reported_gap(name: str) -> str:
    from videopool.models import get_named_config

    reported = get_named_config(name).reported
    return f"{100 * reported['gap']:.1f}" if reported.get("gap") is not None else "–"


def write_markdown(results: dict, args: argparse.Namespace, peak_rss_gb: float) -> None:
    lines = [
        "# Results: the papers' ablations on the demo data",
        "",
        "Regenerate with `python benchmarks/ablations.py` (writes this file). Every row is the `_small` variant",
        f"of the named configuration, trained with one shared budget: {args.epochs} epochs over the 4,000 demo",
        f"training videos, {args.num_frames} random frames per video (with replacement), batch {args.batch_size},",
        f"Adam lr {args.lr:g} (staircase ×0.8 per 200k examples), per-tensor clipping 1.0, the TF1 loss, seed",
        f"{args.seed}; validation on the 1,000 demo validation videos using every real frame. `paper GAP` is the",
        "number the paper reports on YouTube-8M (full-size model, full data) — a reference for the *ordering*, not",
        "a target for the value. Training throughput is end-to-end (data loading included) on this machine's",
        f"2 cores ({platform.processor() or platform.machine()}); peak RSS of the whole sweep {peak_rss_gb:.1f} GB;",
        "`peak RSS MB` is each model's own peak (measured since the rows of the 2018 papers were added; – before).",
        "",
    ]
    for key, (title, names) in GROUPS.items():
        rows = [n for n in names if n in results]
        if not rows:
            continue
        lines += [f"## {title}", "",
                  "| model | paper GAP | GAP@20 | hit@1 | mAP | params | train videos/s | peak RSS MB |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name in rows:
            r = results[name]
            rss = f"{r['peak_rss_mb']:,.0f}" if r.get("peak_rss_mb") else "–"
            lines.append(f"| `{name}` | {reported_gap(name)} | {r['gap']:.4f} | {r['hit_at_1']:.4f} | {r['map']:.4f} "
                         f"| {r['parameters']:,} | {r['videos_per_s']:.0f} | {rss} |")
        lines.append("")
    path = args.out
    text = "\n".join(lines)
    marker = "<!-- analysis -->"
    if os.path.isfile(path):  # keep the hand-written analysis below the marker
        old = open(path).read()
        if marker in old:
            text += "\n" + old[old.index(marker):]
    with open(path, "w") as f:
        f.write(text if marker in text else text + f"\n{marker}\n")
    print(f"wrote {path}")


def main() -> None:
    from videopool.core.malloc import tune_malloc

    tune_malloc()
    args = parse_args()
    ensure_data(args.data)
    cache: dict = {}
    if os.path.isfile(args.cache) and not args.force:
        with open(args.cache) as f:
            cache = json.load(f)
    groups = args.only or list(GROUPS)
    names = list(dict.fromkeys(n for g in groups for n in GROUPS[g][1]))
    trained = False
    for i, name in enumerate(names, 1):
        if name in cache:
            continue
        trained = True
        started = time.perf_counter()
        cache[name] = run_model(name, args)
        r = cache[name]
        print(f"[{i}/{len(names)}] {name:<34} GAP {r['gap']:.4f}  hit@1 {r['hit_at_1']:.4f}  "
              f"{r['videos_per_s']:.0f} videos/s  ({time.perf_counter() - started:.0f} s)", flush=True)
        os.makedirs(os.path.dirname(args.cache) or ".", exist_ok=True)
        with open(args.cache, "w") as f:
            json.dump(cache, f, indent=1)
    if trained or "_peak_rss_gb" not in cache:
        cache["_peak_rss_gb"] = max(cache.get("_peak_rss_gb", 0.0), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
        with open(args.cache, "w") as f:
            json.dump(cache, f, indent=1)
    write_markdown(cache, args, cache["_peak_rss_gb"])


if __name__ == "__main__":
    main()
