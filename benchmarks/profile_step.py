"""Roofline of one training step and one inference batch, operator by operator, grouped by model part.

    python benchmarks/profile_step.py --small                 # batch 16 x 100 frames, V = 1,000 (a minute or so)
    python benchmarks/profile_step.py                         # batch 64 x 300 frames, V = 3,862 (the issue's size)
    python benchmarks/profile_step.py --ops 15                # also the 15 costliest operators of each part

For gated NetVLAD at K = 64 and K = 256 and NeXtVLAD at K = 128, in fp32 and bf16 (master weights), one training
step (:class:`videopool.training.step.TrainStep`, the trainer's code) and one inference batch run under
``torch.profiler`` with shapes and FLOPs. Every aten operator is assigned to a part:

- forward parts by ``record_function`` scopes opened by module hooks (hidden FC, gating, head) and around the
  pooling's ``assign`` / ``aggregate`` methods (assignment, aggregation; what else the pooling runs — its batch
  norms, the L2 normalisations — is "pooling other"; NeXtVLAD's pool is one function, so all of it is
  "pooling"); whatever the model runs outside them is "input" (mask checks, frame norm, fusion);
- loss, clipping (with the bf16 gradient copy) and optimizer (with the bf16 weight copy) by the scopes in
  ``TrainStep``;
- backward operators by the autograd sequence number that links each backward node to its forward operator.

Per part: self CPU time, matmul FLOPs (the profiler's), bytes moved (each leaf operator's inputs, from the recorded
shapes and dtypes, plus an output the size of its largest input — or ``M x N`` for a matmul), and the lower bound
``max(FLOPs / matmul ceiling of the operator's dtype, bytes / copy bandwidth)`` with the ceilings measured at the
same run (square GEMMs in fp32 and bf16, a 256 MiB tensor copy), re-measured before every configuration and the
best kept (a shared machine's busy moment must not lower the ceiling). "bound %" = bound / measured time. One
profiled step after two warm-up steps; the machine's noise is not averaged out, so repeat the run for the spread.
The copy bandwidth is DRAM's: a part whose tensors stay in cache can beat its "bound" (bound % > 100).
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import statistics
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from videopool.models import create_model
from videopool.training.step import TrainStep, prepare_bf16

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train import matmul_ceiling  # noqa: E402
from machine import cpu_flags as machine_flags, cpu_model  # noqa: E402

DTYPE_BYTES = {"float": 4, "c10::BFloat16": 2, "c10::Half": 2, "double": 8, "long int": 8, "int": 4, "bool": 1,
               "unsigned char": 1, "signed char": 1}
MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul"}
PART = "part:"
# views, allocations and bookkeeping: they move no tensor data (an op made only of these counts its own bytes)
NO_DATA = {f"aten::{name}" for name in (
    "resolve_conj resolve_neg as_strided expand view _unsafe_view reshape _reshape_alias t transpose permute "
    "unsqueeze squeeze select slice alias detach empty empty_like empty_strided new_empty_strided new_empty "
    "resize_ lift_fresh unflatten flatten split chunk narrow numpy_T item _local_scalar_dense fill_").split()}


def cpu_flags() -> str:
    return f"{cpu_model()}; flags: {machine_flags(('amx_bf16', 'avx512_bf16', 'avx512f', 'avx2'))}"


def copy_bandwidth(mib: int = 256, repeats: int = 5) -> float:
    """GB/s of a large tensor copy, read + write counted."""
    src = torch.empty(mib * 2**20 // 4)
    src.uniform_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - start)
    return 2 * src.numel() * 4 / statistics.median(times) / 1e9


class Scope:
    """Opens ``record_function(part:name)`` in a forward pre-hook (or around a method) and closes it after."""

    def __init__(self, name: str) -> None:
        self.name, self.open = PART + name, []

    def enter(self, *_):
        self.open.append(record_function(self.name).__enter__())

    def exit(self, *_):
        self.open.pop().__exit__(None, None, None)

    def hook(self, module: torch.nn.Module) -> None:
        module.register_forward_pre_hook(self.enter)
        module.register_forward_hook(self.exit)

    def wrap(self, obj, method: str) -> None:
        inner = getattr(obj, method)

        def scoped(*args, **kwargs):
            with record_function(self.name):
                return inner(*args, **kwargs)

        setattr(obj, method, scoped)


def add_scopes(model: torch.nn.Module) -> None:
    for pooling in model.poolings.values():
        inner = getattr(pooling, "pooling", pooling)  # a modality wrapper may hold the layer
        if hasattr(inner, "assign") and hasattr(inner, "aggregate"):
            Scope("pooling other").hook(pooling)
            Scope("assignment").wrap(inner, "assign")
            Scope("aggregation").wrap(inner, "aggregate")
        else:
            Scope("pooling").hook(pooling)
    for attribute, name in (("hidden", "hidden FC"), ("gating", "gating"), ("classifier", "MoE head")):
        Scope(name).hook(getattr(model, attribute))


def op_bytes(event) -> int:
    sizes = [DTYPE_BYTES.get(dtype, 4) for dtype in (event.input_dtypes or [])]
    shapes = [shape for shape in (event.input_shapes or []) if isinstance(shape, list)]
    total, largest = 0, 0
    for i, shape in enumerate(shapes):
        numel = 1
        for dim in shape:
            numel *= dim
        nbytes = numel * (sizes[i] if i < len(sizes) else 4)
        total += nbytes
        largest = max(largest, nbytes)
    if event.name in MATMULS and len(shapes) >= 2:
        a, b = shapes[-2], shapes[-1]
        if len(a) >= 2 and len(b) >= 2:
            out = a[-2] * b[-1] * (a[0] if len(a) == 3 else 1)
            return total + out * (sizes[-1] if sizes else 4)
    return total + largest


def part_of(event, forward_part: dict[int, str]) -> str:
    node, backward_seq = event, None
    while node is not None:
        if node.name.startswith(PART):
            part = node.name[len(PART):]
            return part if backward_seq is None else f"backward: {part}"
        if node.name.startswith("autograd::engine::evaluate_function"):
            backward_seq = node.sequence_nr
            return "backward: " + forward_part.get(backward_seq, "input")
        node = node.cpu_parent
    return "input"


def analyse(prof, ceilings: dict[str, float], bandwidth: float, adam_params: int = 0):
    """Per part and per operator: ``ms, flops, bytes, bound ms``. ``adam_params``: the optimizer's parameter count,
    for the fused Adam kernel, whose tensor-list arguments the profiler records without shapes."""
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    forward_part: dict[int, str] = {}
    for e in events:
        if e.sequence_nr >= 0:
            part = part_of(e, {})
            if not part.startswith("backward"):
                forward_part.setdefault(e.sequence_nr, part)
    parts = collections.defaultdict(lambda: {"ms": 0.0, "flops": 0.0, "bytes": 0.0, "bound": 0.0})
    ops = collections.defaultdict(lambda: collections.defaultdict(lambda: [0.0, 0.0, 0.0]))
    for e in events:
        part = part_of(e, forward_part)
        leaf = e.name not in NO_DATA and (e.name in MATMULS or all(
            child.name in NO_DATA for child in e.cpu_children if child.name.startswith("aten::")))
        ms = e.self_cpu_time_total / 1e3
        # an op whose child computes the FLOPs (autocast's re-dispatch, matmul -> mm) must not count them again
        nested = any(child.flops for child in e.cpu_children if child.name.startswith("aten::"))
        flops = 0.0 if nested else float(e.flops or 0)
        nbytes = op_bytes(e) if leaf else 0
        if e.name.startswith("aten::_fused_adam"):  # reads param, grad, m, v and writes param, m, v: 28 B (fp32)
            nbytes = 28 * adam_params
        dtype = "bf16" if "c10::BFloat16" in (e.input_dtypes or []) else "fp32"
        bound = max(flops / (ceilings[dtype] * 1e9), nbytes / (bandwidth * 1e9)) * 1e3
        row = parts[part]
        row["ms"] += ms
        row["flops"] += flops
        row["bytes"] += nbytes
        row["bound"] += bound
        op = ops[part][e.name]
        op[0] += ms
        op[1] += flops
        op[2] += nbytes
    return parts, ops


def print_table(title: str, parts, ops, measured_ms: float, top_ops: int) -> None:
    print(f"\n### {title}: {measured_ms:.1f} ms wall")
    print("| part | ms | GFLOP | MB | bound ms | bound % |")
    print("|---|---:|---:|---:|---:|---:|")
    total = {"ms": 0.0, "flops": 0.0, "bytes": 0.0, "bound": 0.0}
    for part, row in sorted(parts.items(), key=lambda kv: -kv[1]["ms"]):
        for key in total:
            total[key] += row[key]
        share = 100 * row["bound"] / row["ms"] if row["ms"] else 0.0
        print(f"| {part} | {row['ms']:.2f} | {row['flops'] / 1e9:.2f} | {row['bytes'] / 1e6:.0f} | "
              f"{row['bound']:.2f} | {share:.0f} |")
    print(f"| **all operators** | {total['ms']:.2f} | {total['flops'] / 1e9:.2f} | {total['bytes'] / 1e6:.0f} | "
          f"{total['bound']:.2f} | {100 * total['bound'] / max(total['ms'], 1e-9):.0f} |")
    print(f"(wall vs bound: {100 * total['bound'] / measured_ms:.0f} % of the roofline reached)")
    if top_ops:
        for part, table in sorted(ops.items()):
            costly = sorted(table.items(), key=lambda kv: -kv[1][0])[:top_ops]
            print(f"  {part}: " + "; ".join(f"{name[6:]} {ms:.2f} ms {fl / 1e9:.2f} GF {b / 1e6:.0f} MB"
                                             for name, (ms, fl, b) in costly))


def profile_once(fn) -> tuple:
    fn()  # warm-up (allocations, oneDNN primitive caches)
    fn()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True, with_flops=True) as prof:
        start = time.perf_counter()
        fn()
        wall = (time.perf_counter() - start) * 1e3
    return prof, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="batch 16 x 100 frames, 1,000 classes")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--num-frames", type=int)
    parser.add_argument("--num-classes", type=int)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--configs", nargs="+", default=["gated_netvlad_256:64", "gated_netvlad_256:256",
                                                         "nextvlad_k128_g8:128"], help="MODEL:K")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--ops", type=int, default=0, help="print the N costliest operators of each part")
    args = parser.parse_args()
    b = args.batch_size or (16 if args.small else 64)
    n = args.num_frames or (100 if args.small else 300)
    v = args.num_classes or (1000 if args.small else 3862)
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_flags()}; torch {torch.__version__}; {args.threads} thread(s); python {platform.python_version()}")
    ceilings = {"fp32": matmul_ceiling(torch.float32, sizes=(2048,)),
                "bf16": matmul_ceiling(torch.bfloat16, sizes=(2048,))}
    bandwidth = copy_bandwidth()
    print(f"ceilings measured now: fp32 matmul {ceilings['fp32']:.0f} GFLOP/s, bf16 matmul {ceilings['bf16']:.0f} "
          f"GFLOP/s, copy {bandwidth:.1f} GB/s; batch {b} x {n} frames, V = {v}")
    for spec in args.configs:
        name, k = spec.split(":")
        for precision in args.precisions:
            # on a shared machine one measurement can catch a busy moment: keep the best ceilings seen so far
            ceilings = {"fp32": max(ceilings["fp32"], matmul_ceiling(torch.float32, sizes=(2048,))),
                        "bf16": max(ceilings["bf16"], matmul_ceiling(torch.bfloat16, sizes=(2048,)))}
            bandwidth = max(bandwidth, copy_bandwidth())
            print(f"\nceilings so far: fp32 {ceilings['fp32']:.0f} GFLOP/s, bf16 {ceilings['bf16']:.0f} GFLOP/s, "
                  f"copy {bandwidth:.1f} GB/s")
            torch.manual_seed(0)
            model = create_model(name, num_classes=v, cluster_size=int(k)).train()
            add_scopes(model)
            step = TrainStep(model, precision=precision, device=torch.device("cpu"), learning_rate=2e-4,
                             master=prepare_bf16(model, precision, "master_weights"))
            frames = {m: torch.rand(b, n, size) * 4 - 2 for m, size in model.config.modalities.items()}
            mask = torch.ones(b, n, dtype=torch.bool)
            labels = torch.zeros(b, v)
            labels[torch.arange(b).repeat_interleave(3), torch.randint(0, v, (3 * b,))] = 1
            prof, wall = profile_once(lambda: step(frames, mask, labels))
            parts, ops = analyse(prof, ceilings, bandwidth, sum(p.numel() for p in step.params))
            print_table(f"{name} K={k} train {precision}", parts, ops, wall, args.ops)
            model.eval()

            def infer():
                with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
                    model(frames, mask)

            prof, wall = profile_once(infer)
            parts, ops = analyse(prof, ceilings, bandwidth)
            print_table(f"{name} K={k} inference {precision}", parts, ops, wall, args.ops)
            del model, step, prof


if __name__ == "__main__":
    main()
