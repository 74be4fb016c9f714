"""Command-line options that ``evaluate`` and ``predict`` share (they run the same inference path)."""

from __future__ import annotations


def add_inference_options(p) -> None:
    """``--precision``, ``--device``, ``--workers`` and ``--compile`` of :func:`videopool.inference.run_inference`."""
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="fp32",
                   help="fp32 (default, exact) or bf16 weights (faster where bf16 matmuls are, e.g. AMX or GPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=None,
                   help="data-loading processes (default: 0 on a CPU machine with <= 2 cores, else 1)")
    p.add_argument("--compile", action="store_true",
                   help="run the model through torch.compile: a few seconds to compile, then up to ~15%% faster "
                        "on CPU for large runs (batches are padded to --num-frames)")
