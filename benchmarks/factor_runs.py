"""Shared machinery of the one-factor-at-a-time studies (``mfb_factors.py``, ``rnn_factors.py``).

A *row* is one setting: a named config's ``_small`` twin, model overrides, recipe overrides and the seeds to
train it with. Every row is trained by the study's ``train(row, seed)`` (``fast_study.train``: the same model,
step and metrics as ``videopool train``, on frames decoded once into memory) with :data:`BUDGET` unless the row
overrides it, and each (row, seed) result is cached in a JSON file so that an interrupted study resumes where it
stopped.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable

from machine import cpu_flags  # noqa: F401 (re-exported to the factor studies)

# The ablation table's budget (docs/results.md: the 4,000 demo training videos, batch 80, Adam at 3e-3, no lr decay)
# cut to 2 epochs (100 steps) of 32 instead of 4 epochs of 64 frames per video, to fit a shared, overloaded 2-core
# machine (load average ~15 when these were measured).
BUDGET = {"epochs": 2, "num_frames": 32, "learning_rate": 3e-3, "frame_selection": "random", "batch_size": 80}


@dataclass
class Row:
    label: str
    model: str  # a named config; its _small twin is trained
    model_overrides: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)

    def key(self) -> str:
        return json.dumps([self.model, self.model_overrides, {**BUDGET, **self.recipe}], sort_keys=True)


def load_cache(path: str) -> dict:
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return {}


def save_cache(cache: dict, path: str) -> None:
    from videopool.core.files import atomic_path

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(cache, f, indent=1, sort_keys=True)


def run_rows(rows: list[Row], *, cache_path: str, train: Callable[[Row, int], dict],
             only: list[str] | None = None) -> dict[str, dict[str, dict]]:
    """Train (``train(row, seed)``) every (row, seed) not cached yet, caching each result as it comes; returns
    ``{label: {seed: record}}`` for ``rows``. ``only``: train just these labels (``[]``: none)."""
    cache = load_cache(cache_path)
    results: dict[str, dict[str, dict]] = {}
    for rank in range(max(len(row.seeds) for row in rows)):  # every row's first seed before any second one
        for row in rows:
            entry = cache.setdefault(row.key(), {})
            if rank < len(row.seeds) and (only is None or row.label in only) and str(row.seeds[rank]) not in entry:
                seed = row.seeds[rank]
                entry[str(seed)] = train(row, seed)
                save_cache(cache, cache_path)
                print(f"{row.label} seed {seed}: GAP {entry[str(seed)]['gap']:.4f} "
                      f"({entry[str(seed)]['seconds']} s)", flush=True)
    for row in rows:
        results[row.label] = {s: r for s, r in cache.get(row.key(), {}).items() if int(s) in row.seeds}
    return results


def mean_std(values: list[float], digits: int = 4) -> str:
    """``mean ± std`` (sample std) over the seeds, or the one value."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(rows: list[Row], results: dict[str, dict[str, dict]], columns: list[tuple[str, str, int]]) -> str:
    """A markdown table: one line per row, ``columns`` = (header, record key, digits), mean ± std over seeds."""
    lines = ["| setting | seeds | " + " | ".join(h for h, _, _ in columns) + " |",
             "|---|---:|" + "---:|" * len(columns)]
    for row in rows:
        records = list(results.get(row.label, {}).values())
        cells = [mean_std([r[k] for r in records if r.get(k) is not None], d) for _, k, d in columns]
        lines.append(f"| {row.label} | {len(records)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _slug(label: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in label).strip("_")[:80]
