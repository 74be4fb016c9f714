"""What LSTM/GRU pooling needs on the demo data: one factor at a time (issue 15).

Trains the small twins of ``lstm_2x1024`` and ``gru_2x1200`` (Miech et al. 2017, arXiv 1706.06905, Table 1) with
the factor studies' budget (``factor_runs.BUDGET``) and changes one thing per row: the frame selection (``random``
draws frames with replacement, as the reference code does, which destroys their temporal order; ``uniform`` takes
evenly spaced frames in order; ``sequence`` a contiguous window), the state size, gradient clipping and the
learning rate; the first rows run with several seeds for the seed-to-seed spread.

    python benchmarks/rnn_factors.py --data /tmp/demo_run/data     # train what is not cached, print the table
    python benchmarks/rnn_factors.py --report-only
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from factor_runs import BUDGET, Row, cpu_flags, run_rows, table  # noqa: E402

SEEDS = (0, 1)


def rows() -> list[Row]:
    """The settings, most telling first (the study trains them in this order)."""
    lstm, gru = "lstm_2x1024", "gru_2x1200"
    return [
        Row("LSTM 32: random frames (twin)", lstm, seeds=SEEDS),
        Row("LSTM 32: uniform (ordered) frames", lstm, recipe={"frame_selection": "uniform"}, seeds=SEEDS),
        Row("LSTM 32: sequence (contiguous) frames", lstm, recipe={"frame_selection": "sequence"}),
        Row("LSTM 128: uniform frames", lstm, {"pooling.hidden_size": 128}, recipe={"frame_selection": "uniform"},
            seeds=SEEDS),
        Row("LSTM 32: uniform frames, lr 1e-2", lstm, recipe={"frame_selection": "uniform", "learning_rate": 1e-2}),
        Row("LSTM 32: uniform frames, no clipping", lstm, recipe={"frame_selection": "uniform", "clip_mode": "none"}),
        Row("GRU 32: random frames (twin recipe here)", gru),
        Row("GRU 32: uniform frames", gru, recipe={"frame_selection": "uniform"}),
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/tmp/demo_run/data")
    p.add_argument("--rows", nargs="*", help="train only these row labels (the report shows all)")
    p.add_argument("--cache", default="benchmarks/results/rnn_factors.json")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    from fast_study import train

    def run(row: Row, seed: int) -> dict:
        result = train(row.model, row.model_overrides, {**BUDGET, **row.recipe}, seed, args.data)
        result.pop("model")
        return result

    all_rows = rows()
    results = run_rows(all_rows, cache_path=args.cache, only=[] if args.report_only else args.rows, train=run)
    print(f"\nCPU flags: {cpu_flags()}; budget: {BUDGET}\n")
    print(table(all_rows, results, [("GAP@20", "gap", 4), ("hit@1", "hit_at_1", 4), ("mAP", "map", 4),
                                    ("final train loss", "final_loss", 2)]))
    print("\nGAP after each epoch (first seed):")
    for row in all_rows:
        first = results.get(row.label, {}).get(str(row.seeds[0]))
        if first:
            print(f"  {row.label}: " + " ".join(f"{g:.3f}" for g in first["curve"]))


if __name__ == "__main__":
    main()
