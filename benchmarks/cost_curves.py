"""Cost-growth curves: time and peak memory of a training step and an inference batch against one size at a time.

    python benchmarks/cost_curves.py                       # the small default grid (a few minutes, 1 thread)
    python benchmarks/cost_curves.py --json out.json --plots docs/img

Axes, each varied alone around a base point (100 frames, K = 64, batch 16, 1,000 classes): frames per video
(60...300), clusters (16...256; 512 with ``--clusters 16 64 256 512`` needs ~10 GB), batch (16...128) and classes
(1,000...3,862), for gated NetVLAD and NeXtVLAD (fp32; ``--precision bf16`` for the other path).

Beside each measurement, the formula's prediction: matmul FLOPs (``bench_train.forward_flops_per_video``, x3 for
training) and the optimizer's traffic (28 B per parameter for Adam), turned into a predicted time with the matmul
ceiling and copy bandwidth measured in the same run: ``FLOPs / ceiling + Adam bytes / bandwidth``. A curve that is
linear where the formula is linear matches; where it bends, the text in docs/performance.md says why.
Peak memory: the process's peak RSS during the step above its RSS before it (``/proc/self/clear_refs`` resets the
peak; Linux only) after ``malloc_trim`` gave the freed memory back, so it is what one call allocates (activations,
gradients, temporaries) on top of the weights and the optimizer state.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from videopool.core.files import atomic_path
from videopool.core.malloc import release_memory
from videopool.models import create_model
from videopool.training.step import TrainStep, prepare_bf16

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train import forward_flops_per_video, matmul_ceiling  # noqa: E402
from profile_step import copy_bandwidth, cpu_flags  # noqa: E402

MODELS = {"gated NetVLAD": "gated_netvlad_256", "NeXtVLAD": "nextvlad_k128_g8"}
BASE = {"frames": 100, "clusters": 64, "batch": 16, "classes": 1000}


def rss_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(fn, repeats: int) -> tuple[float, float]:
    """Median seconds over ``repeats`` calls after one warm-up, and the peak RSS growth (MiB) of one call."""
    fn()
    release_memory()  # hand the freed arenas back, so the measured call's allocations show up in RSS again
    before = rss_mib("VmRSS")
    peak = float("nan")
    if reset_peak():
        fn()
        peak = rss_mib("VmHWM") - before
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), peak


def point(model_name: str, sizes: dict, precision: str, repeats: int, ceiling: float, bandwidth: float) -> dict:
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=sizes["classes"], cluster_size=sizes["clusters"]).train()
    step = TrainStep(model, precision=precision, device=torch.device("cpu"), learning_rate=2e-4,
                     master=prepare_bf16(model, precision, "master_weights"))
    b, n, v = sizes["batch"], sizes["frames"], sizes["classes"]
    frames = {m: torch.rand(b, n, size) * 4 - 2 for m, size in model.config.modalities.items()}
    mask = torch.ones(b, n, dtype=torch.bool)
    labels = (torch.rand(b, v) < 3 / v).float()
    train_s, train_mib = measure(lambda: step(frames, mask, labels), repeats)
    model.eval()

    def infer():
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            model(frames, mask)

    infer_s, infer_mib = measure(infer, repeats)
    params = sum(p.numel() for p in model.parameters())
    forward = forward_flops_per_video(model.config, n) * b
    return {**sizes, "train_s": train_s, "train_peak_mib": train_mib, "infer_s": infer_s,
            "infer_peak_mib": infer_mib, "params": params, "train_flops": 3 * forward, "infer_flops": forward,
            "predicted_train_s": 3 * forward / (ceiling * 1e9) + 28 * params / (bandwidth * 1e9),
            "predicted_infer_s": forward / (ceiling * 1e9)}


def plot(results: dict, out_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for axis in BASE:
        fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 3.6))
        for label, rows in results.items():
            rows = [r for r in rows if r["axis"] == axis]
            xs = [r[axis] for r in rows]
            for key, style in (("train", "-o"), ("infer", "-s")):
                line, = ax_t.plot(xs, [r[f"{key}_s"] * 1e3 for r in rows], style, label=f"{label} {key}")
                ax_t.plot(xs, [r[f"predicted_{key}_s"] * 1e3 for r in rows], ":", color=line.get_color())
                ax_m.plot(xs, [r[f"{key}_peak_mib"] for r in rows], style, label=f"{label} {key}")
        ax_t.set(xlabel=axis, ylabel="ms per step (dotted: formula)", title=f"time vs {axis}")
        ax_m.set(xlabel=axis, ylabel="peak RSS growth, MiB", title=f"memory vs {axis}")
        ax_t.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(out_dir, f"cost_{axis}.png")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[60, 150, 300])
    parser.add_argument("--clusters", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 64, 128])
    parser.add_argument("--classes", type=int, nargs="+", default=[1000, 2000, 3862])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plots", help="write cost_<axis>.png into this folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    ceiling, bandwidth = matmul_ceiling(dtype, sizes=(2048,)), copy_bandwidth()
    print(f"CPU: {cpu_flags()}; {args.threads} thread(s); {args.precision}; ceilings now: matmul {ceiling:.0f} "
          f"GFLOP/s, copy {bandwidth:.1f} GB/s")
    results: dict[str, list[dict]] = {}
    for label in args.models:
        rows = results.setdefault(label, [])
        for axis in BASE:
            for value in getattr(args, axis):
                sizes = {**BASE, axis: value}
                row = {"axis": axis, **point(MODELS[label], sizes, args.precision, args.repeats, ceiling, bandwidth)}
                rows.append(row)
                print(f"{label:14s} {axis:8s}={value:5d}  train {row['train_s'] * 1e3:8.1f} ms "
                      f"(formula {row['predicted_train_s'] * 1e3:7.1f})  peak {row['train_peak_mib']:7.0f} MiB  "
                      f"infer {row['infer_s'] * 1e3:7.1f} ms (formula {row['predicted_infer_s'] * 1e3:6.1f})  "
                      f"peak {row['infer_peak_mib']:6.0f} MiB  params {row['params'] / 1e6:6.1f} M", flush=True)
    meta = {"cpu": cpu_flags(), "threads": args.threads, "precision": args.precision,
            "matmul_gflops": ceiling, "copy_gbs": bandwidth}
    if args.json:
        with atomic_path(args.json) as tmp, open(tmp, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
    if args.plots:
        os.makedirs(args.plots, exist_ok=True)
        print("plots:", ", ".join(plot(results, args.plots)))


if __name__ == "__main__":
    main()
