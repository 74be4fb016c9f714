"""Is bf16 LSTM training as stable as fp32 over seeds? (issue 15)

Trains the ``lstm_2x1024`` small twin (Miech et al. 2017, arXiv 1706.06905, Table 1) at the factor studies'
budget (``factor_runs.BUDGET``: 2 epochs, 100 steps, 32 random frames, batch 80, Adam 3e-3) with ≥ 5 seeds in
three precisions: fp32; bf16 as ``videopool train --precision bf16`` runs it (autocast + bf16 master weights,
the recurrence kept in fp32 by ``videopool.layers.recurrent``); and the same bf16 run with that fp32 guard
switched off (``_RecurrentPooling._recur`` monkeypatched back to a plain ``self.rnn(inputs)``), which is how the
recurrence ran before the fix. Prints mean ± std over the seeds of GAP@20, hit@1, mAP and the final train loss.

    nice -n 5 python benchmarks/rnn_bf16_seeds.py --data /tmp/demo_run/data   # trains what is not cached
    python benchmarks/rnn_bf16_seeds.py --report-only

To share the work between processes, give each its own ``--cache`` and its ``--rows``/``--only-seeds``, then
report with ``--merge`` of the other caches. The fp32 row reuses ``rnn_factors.py``'s fp32 runs of the same twin
at the same budget (the same computation: seed 0 recomputed here gives the same GAP to 4 digits).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from factor_runs import BUDGET, Row, cpu_flags, run_rows, table  # noqa: E402

SEEDS = (0, 1, 2, 3, 4)
MODEL = "lstm_2x1024"


def rows(seeds: tuple[int, ...] = SEEDS) -> list[Row]:
    # precision / guard live in the recipe so that they are part of the cache key; fast_study ignores them.
    return [
        Row("LSTM 32, fp32", MODEL, recipe={"precision": "fp32"}, seeds=seeds),
        Row("LSTM 32, bf16 (recurrence in fp32, as shipped)", MODEL, recipe={"precision": "bf16"}, seeds=seeds),
        Row("LSTM 32, bf16, fp32 guard off (before the fix)", MODEL,
            recipe={"precision": "bf16", "recurrent_guard": False}, seeds=seeds),
        # The twin's matrices are all under prepare_bf16's 2^20-element threshold, so its masters stay fp32; the
        # full-size lstm_2x1024 holds its recurrent matrices (4.2-4.7 M elements) in bf16. These rows put every
        # matrix of the twin in bf16 to run that scheme on the recurrence.
        Row("LSTM 32, bf16, every matrix in bf16 (as full size)", MODEL,
            recipe={"precision": "bf16", "bf16_min_numel": 0}, seeds=seeds),
        Row("LSTM 32, bf16, every matrix in bf16, guard off", MODEL,
            recipe={"precision": "bf16", "bf16_min_numel": 0, "recurrent_guard": False}, seeds=seeds),
    ]


@contextlib.contextmanager
def bf16_threshold(min_numel: int | None):
    """``prepare_bf16`` (which ``fast_study.train`` imports at call time) with another ``min_numel``."""
    from videopool.training import step

    original = step.prepare_bf16
    if min_numel is not None:
        step.prepare_bf16 = functools.partial(original, min_numel=min_numel)
    try:
        yield
    finally:
        step.prepare_bf16 = original


@contextlib.contextmanager
def recurrent_guard(enabled: bool):
    """With ``enabled=False`` the LSTM runs in whatever dtype autocast and the bf16 masters give it."""
    from videopool.layers import recurrent

    original = recurrent._RecurrentPooling._recur
    if not enabled:
        recurrent._RecurrentPooling._recur = lambda self, inputs: self.rnn(inputs)[1]
    try:
        yield
    finally:
        recurrent._RecurrentPooling._recur = original


def merge_caches(path: str, others: list[str], reuse_fp32: str | None, fp32_row: Row) -> None:
    """Copy into the cache ``path`` the results of ``others`` (same keys) and rnn_factors' fp32 runs of the twin
    at this budget (its key lacks the ``precision`` entry; fast_study trains fp32 by default)."""
    from factor_runs import load_cache, save_cache

    cache = load_cache(path)
    for other in others:
        for key, entry in load_cache(other).items():
            cache.setdefault(key, {}).update(entry)
    if reuse_fp32:
        plain = Row(fp32_row.label, fp32_row.model).key()
        for seed, record in load_cache(reuse_fp32).get(plain, {}).items():
            cache.setdefault(fp32_row.key(), {}).setdefault(seed, record)
    save_cache(cache, path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/tmp/demo_run/data")
    p.add_argument("--seeds", type=int, default=len(SEEDS), help="seeds 0..N-1 per row")
    p.add_argument("--cache", default="benchmarks/results/rnn_bf16_seeds.json")
    p.add_argument("--rows", nargs="*", help="train only these row labels (the report shows all)")
    p.add_argument("--only-seeds", type=int, nargs="*", help="train only these seeds (to split the work between "
                   "processes, each with its own --cache, joined afterwards with --merge)")
    p.add_argument("--merge", nargs="*", default=[], help="caches of other processes to merge into --cache first")
    p.add_argument("--reuse-fp32", default="benchmarks/results/rnn_factors.json",
                   help="rnn_factors' cache: its fp32 twin runs at this budget are the fp32 row's (same computation)")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    from fast_study import train

    def run(row: Row, seed: int) -> dict:
        recipe = {**BUDGET, **row.recipe}
        with recurrent_guard(recipe.get("recurrent_guard", True)), bf16_threshold(recipe.get("bf16_min_numel")):
            result = train(row.model, row.model_overrides, recipe, seed, args.data, precision=recipe["precision"])
        result.pop("model")
        return result

    all_rows = rows(tuple(range(args.seeds)))
    merge_caches(args.cache, args.merge, args.reuse_fp32, all_rows[0])
    train_rows = [Row(r.label, r.model, r.model_overrides, r.recipe,
                      tuple(s for s in r.seeds if args.only_seeds is None or s in args.only_seeds)) for r in all_rows]
    train_rows = [r for r in train_rows if r.seeds] or all_rows
    only = [] if args.report_only else args.rows
    run_rows(train_rows, cache_path=args.cache, only=only, train=run)
    results = run_rows(all_rows, cache_path=args.cache, only=[], train=run)
    print(f"\nCPU flags: {cpu_flags()}; budget: {BUDGET}\n")
    print(table(all_rows, results, [("GAP@20", "gap", 4), ("hit@1", "hit_at_1", 4), ("mAP", "map", 4),
                                    ("final train loss", "final_loss", 2)]))
    print("\nper seed (GAP@20 / final loss / seconds):")
    for row in all_rows:
        cells = [f"{s}: {r['gap']:.4f} / {r['final_loss']:.2f} / {r['seconds']}"
                 for s, r in sorted(results.get(row.label, {}).items())]
        print(f"  {row.label}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
