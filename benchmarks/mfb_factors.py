"""Why MFB fusion trails FC-concatenation on the demo data: one factor at a time (issue 15).

Trains the small twins of the MFB study (Liu et al. 2018, arXiv 1809.05848) with the factor studies' budget
(``factor_runs.BUDGET``, in ``fast_study``) and changes one thing per row against the twin's MFB (k = 5, o = 100,
dropout 0.1, ReLU, L2): the paper's sizes (k = 5, o = 1,000), signed-square-root normalisation, no dropout on
the product, the learning rate, the fused vector scaled by 35 (FC-concatenation's norm at initialisation; an
intervention of this benchmark, wrapping the layer's output), and a longer budget (for FC-concatenation too). Per
run it records the L2 norm per validation video of the fused vector entering the MoE and the mean gradient norms
reaching the two projections and the pooled vectors over the first 100 training steps.

    python benchmarks/mfb_factors.py --data /tmp/demo_run/data          # train what is not cached, print tables
    python benchmarks/mfb_factors.py --report-only                       # tables from the cache
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from factor_runs import BUDGET, Row, cpu_flags, run_rows, table  # noqa: E402

SEEDS = (0, 1)


def rows(pool: str) -> list[Row]:
    """The settings, most telling first (the study trains every row's first seed in this order, then the second
    seeds). The two 6-epoch rows were trained into their own cache (``--cache ..._long.json --rows ...``)."""
    fc, mfb, concat, p = f"mfb_{pool}_fc_concat", f"mfb_{pool}_mfb", f"mfb_{pool}_concat", pool
    return [
        Row(f"{p}: FC-concat", fc, seeds=SEEDS),
        Row(f"{p}: MFB (twin: k=5, o=100, ReLU, dropout 0.1)", mfb, seeds=SEEDS),
        Row(f"{p}: MFB, output ×35 (FC-concat's norm at init)", mfb, recipe={"fused_scale": 35.0}, seeds=SEEDS),
        Row(f"{p}: MFB, signed sqrt", mfb, {"fusion.normalization": "signed_sqrt"}),
        Row(f"{p}: MFB, lr 1e-2", mfb, recipe={"learning_rate": 1e-2}),
        Row(f"{p}: MFB, paper sizes k=5, o=1000", mfb, {"fusion.output_size": 1000}),
        Row(f"{p}: MFB, no dropout", mfb, {"fusion.dropout": 0.0}),
        Row(f"{p}: concat", concat),
        Row(f"{p}: FC-concat, lr 1e-2", fc, recipe={"learning_rate": 1e-2}),
        Row(f"{p}: MFB, signed sqrt, lr 1e-2", mfb, {"fusion.normalization": "signed_sqrt"},
            recipe={"learning_rate": 1e-2}),
        Row(f"{p}: FC-concat, 6 epochs", fc, recipe={"epochs": 6}),
        Row(f"{p}: MFB, output ×35, 6 epochs", mfb, recipe={"fused_scale": 35.0, "epochs": 6}),
    ]


def measured(row: Row, seed: int, data: str) -> dict:
    """Train ``row`` with ``seed``; also record the gradient norms reaching the projections and the pooled vectors
    over the first 100 steps, and the norm per validation video of the fused vector entering the MoE."""
    import torch

    from fast_study import load_split, make_batch, train

    grads: dict[str, list[float]] = {}

    def note(name: str):
        def hook(grad):
            if len(grads.setdefault(name, [])) < 100:
                grads[name].append(float(grad.norm()))
        return hook

    recipe = {**BUDGET, **row.recipe}
    scale = recipe.pop("fused_scale", None)

    def on_model(model):
        if scale is not None:  # the study's intervention: the same fused vector, only larger, entering the MoE
            unscaled = model.fusion.forward
            model.fusion.forward = lambda pooled: unscaled(pooled) * scale
        for name, proj in getattr(model.fusion, "projections", {}).items():
            proj.weight.register_hook(note(f"grad_U_{name}"))

        def on_input(_module, args):
            for name, x in args[0].items():
                if x.requires_grad:
                    x.register_hook(note(f"grad_pooled_{name}"))

        model.fusion.register_forward_pre_hook(on_input)

    result = train(row.model, row.model_overrides, recipe, seed, data, on_model=on_model)
    model = result.pop("model").eval()
    norms: list[float] = []
    handle = model.fusion.register_forward_hook(lambda _m, _i, out: norms.extend(out.norm(dim=1).tolist()))
    val = load_split(data, "validate")
    with torch.no_grad():
        for start in range(0, 500, 100):
            frames, mask, _ = make_batch(val, np.arange(start, start + 100), "all", 300, None)
            model(frames, mask)
    handle.remove()
    result.update({k: statistics.mean(v) for k, v in grads.items()})
    result.update(fused_norm=statistics.mean(norms), fused_size=model.fusion.output_size)
    return result


def plot_curves(rows_: list[Row], results: dict, path: str) -> None:
    """Validation GAP after each epoch (first seed) of the rows trained longer than 2 epochs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from videopool.core.files import atomic_write

    figure = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for row in rows_:
        first = results.get(row.label, {}).get(str(row.seeds[0]))
        if first and len(first["curve"]) > 2:
            axes.plot(range(1, len(first["curve"]) + 1), first["curve"], marker="o", label=row.label)
    axes.set_xlabel("epoch (50 steps of 80 videos, 32 random frames)")
    axes.set_ylabel("validation GAP@20")
    axes.set_title("MFB (output x35) against FC-concatenation, DBoF twin, seed 0")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/tmp/demo_run/data")
    p.add_argument("--pools", nargs="*", default=["dbof"], choices=["avgpool", "dbof", "netvlad"])
    p.add_argument("--rows", nargs="*", help="train only these row labels (the report shows all)")
    p.add_argument("--cache", default="benchmarks/results/mfb_factors.json")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--plot", help="write the per-epoch GAP of the rows with more than 2 epochs to this PNG")
    args = p.parse_args(argv)
    all_rows = [r for pool in args.pools for r in rows(pool)]
    only = [] if args.report_only else args.rows
    results = run_rows(all_rows, cache_path=args.cache, only=only,
                       train=lambda row, seed: measured(row, seed, args.data))
    print(f"\nCPU flags: {cpu_flags()}; budget: {BUDGET}\n")
    print(table(all_rows, results, [("GAP@20", "gap", 4), ("hit@1", "hit_at_1", 4), ("mAP", "map", 4),
                                    ("‖fused‖ per video", "fused_norm", 3), ("‖∂L/∂U_rgb‖", "grad_U_rgb", 3),
                                    ("‖∂L/∂U_audio‖", "grad_U_audio", 3), ("‖∂L/∂x_rgb‖", "grad_pooled_rgb", 4),
                                    ("‖∂L/∂x_audio‖", "grad_pooled_audio", 4)]))
    if args.plot:
        plot_curves(all_rows, results, args.plot)
    print("\nGAP after each epoch (seed 0):")
    for row in all_rows:
        first = results.get(row.label, {}).get(str(row.seeds[0]))
        if first:
            print(f"  {row.label}: " + " ".join(f"{g:.3f}" for g in first["curve"]))


if __name__ == "__main__":
    main()
