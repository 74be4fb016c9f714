"""Rerun every benchmark and rewrite the generated sections of docs/performance.md.

    python benchmarks/run_all.py                    # everything, small sizes (aim: <= 15 min on 2 cores)
    python benchmarks/run_all.py --only ab          # one of: reader loader end_to_end train infer metrics ab
                                                    #   profile curves
    python benchmarks/run_all.py --only profile curves

Each benchmark runs as its own process (so one's memory does not inflate the next one's peak), one thread, and
its output goes, as printed, into the section of docs/performance.md between
``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``; everything outside those markers is hand-written
and kept. The CPU model and flags (AMX or not) and the date are written at the top of every generated section.
The file is replaced atomically. A benchmark that fails leaves its section with the error's last lines.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from videopool.core.files import atomic_write  # noqa: E402

# name -> (command, timeout s); sized so the whole list stays within ~15 minutes on 2 cores
BENCHMARKS = {
    "reader": (["bench_reader.py", "--shards", "2", "--videos-per-shard", "250", "--passes", "3"], 150),
    "loader": (["bench_loader.py", "--workers", "0", "1", "2", "--passes", "1"], 150),
    # needs the demo shards at full size (default /tmp/demo_run/data, made by `videopool demo`); fp32 only to fit
    "end_to_end": (["bench_end_to_end.py", "--precisions", "fp32", "--reps", "2", "--steps", "2",
                    "--batch-size", "32"], 300),
    "train": (["bench_train.py", "--threads", "1", "--clusters", "64", "--min-steps", "3", "--max-steps", "5",
               "--min-seconds", "4", "--batch-size", "32", "--num-frames", "150"], 200),
    "infer": (["bench_infer.py", "--threads", "1", "--clusters", "64", "--min-steps", "3", "--max-steps", "6",
               "--min-seconds", "3", "--batch-size", "32", "--num-frames", "150"], 120),
    "metrics": (["bench_metrics.py", "--videos", "50000"], 90),
    "ab": (["ab_step.py", "--rounds", "5"], 150),
    "profile": (["profile_step.py", "--small"], 300),
    "curves": (["cost_curves.py", "--repeats", "2", "--plots", os.path.join(ROOT, "docs", "img"),
                "--json", os.path.join(HERE, "results", "cost_curves.json")], 300),
}


def cpu_line() -> str:
    from profile_step import cpu_flags

    return cpu_flags()


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the generated section ``name`` replaced (appended at the end when it has none yet)."""
    start, end = f"<!-- generated:{name} -->", f"<!-- /generated:{name} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return text.rstrip() + f"\n\n{block}\n"


def run(name: str) -> str:
    command, timeout = BENCHMARKS[name]
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, os.path.join(HERE, command[0]), *command[1:]], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout, env={**os.environ,
                                                                                     "OMP_NUM_THREADS": "1"})
        output = "\n".join(line for line in (done.stdout + done.stderr).splitlines()
                           if not line.startswith("USDT:"))
        status = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
    except subprocess.TimeoutExpired as err:
        output, status = str(err.stdout or "")[-3000:], f"TIMED OUT after {timeout} s"
    seconds = time.perf_counter() - started
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = (f"`python benchmarks/{' '.join(command)}` — {stamp}, {seconds:.0f} s, {status}; CPU: {cpu_line()}")
    lines = output.splitlines()
    if status != "ok":
        lines = lines[-25:]
    return head + "\n\n```\n" + "\n".join(lines) + "\n```\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--doc", default=os.path.join(ROOT, "docs", "performance.md"))
    args = parser.parse_args()
    started = time.perf_counter()
    for name in args.only:
        print(f"== {name}", flush=True)
        body = run(name)
        print(body, flush=True)
        with open(args.doc, encoding="utf-8") as f:  # re-read: another section may have been edited meanwhile
            text = f.read()
        with atomic_write(args.doc, "w", encoding="utf-8") as f:
            f.write(replace_section(text, name, body))
    print(f"all done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
