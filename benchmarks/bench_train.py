"""Training throughput of a named model on a fixed random batch (model compute only, no data loading).

    python benchmarks/bench_train.py                       # gated NetVLAD K=64 and K=256, fp32 + bf16 schemes
    python benchmarks/bench_train.py --clusters 64 --precisions bf16 --bf16-schemes master_weights autocast
    python benchmarks/bench_train.py --memory-check --clusters 256 --batch-size 80

All configurations of one cluster size are built together and timed round-robin (one step
each per round, so they share the shared machine's noise): warm-up steps, then the median
step time over at least --min-steps rounds and --min-seconds per configuration; prints videos/s, the analytic
matmul FLOPs per video (training = 3 x forward, because the input BN has parameters and every GEMM needs both dX
and dW), the fraction of this machine's matmul ceiling measured in the same run, and peak RSS (of the process,
so cumulative over configurations). If TensorFlow happens to be importable, the same model in TF2
(``tf_gated_netvlad.py``, a ``tf.function`` step) is timed the same way right after the torch group of each
cluster size (separately, to keep peak memory at one framework's) and the torch/TF ratios are printed; otherwise
the TF2 reference figures measured on a 2-vCPU Sapphire Rapids VM with AMX are printed instead.
The step is :class:`videopool.training.step.TrainStep`, the same code the trainer runs.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

from videopool.core.malloc import release_memory, tune_malloc

tune_malloc()  # before torch allocates anything large

import torch  # noqa: E402

from videopool.models import create_model  # noqa: E402
from videopool.training.step import TrainStep, prepare_bf16  # noqa: E402

sys.path.insert(0, __file__.rsplit("/", 1)[0])
try:
    import tf_gated_netvlad as tfg  # only when TensorFlow is installed; never a videopool dependency
except ImportError:
    tfg = None


def matmul_ceiling(dtype: torch.dtype, sizes=(2048, 3072), repeats: int = 5) -> float:
    """Best median GFLOP/s of square GEMMs (n = 2048 and 3072) in ``dtype``."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        a @ b
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        best = max(best, 2 * n**3 / statistics.median(times) / 1e9)
    return best


def forward_flops_per_video(config, num_frames: int) -> float:
    """Matmul FLOPs (multiply-add = 2) of one video's forward pass, from the config's layer shapes.

    Covers late fusion of per-modality NetVLAD/NetRVLAD/NetFV (the gated-NetVLAD family, the model of the TF2
    side-by-side benchmark) and NeXtVLAD, then the hidden FC, Context Gating or SE gating and the MoE or
    logistic head with optional output gating; a mixture (``mixture.branches``) counts every branch and its gate.
    """
    total = 0.0
    pooled = 0
    pooling = config.pooling
    for name, size in config.modalities.items():
        settings = pooling.for_modality(name)
        k = settings["cluster_size"]
        if pooling.type == "nextvlad":
            options = settings["options"]
            expanded, groups = options.get("expansion", 2) * size, options.get("groups", 8)
            # expansion FC, group attention, assignment [N,λD]x[λD,GK], aggregation [F,NG]x[NG,K]
            total += 2 * num_frames * (size * expanded + expanded * groups + expanded * groups * k + expanded * k)
            pooled += expanded // groups * k
            continue
        total += 2 * 2 * num_frames * size * k  # assignment [N,D]x[D,K] + aggregation [K,N]x[N,D]
        pooled += size * k * (2 if pooling.type == "netfv" else 1)
    h = config.hidden.size or pooled
    if config.hidden.size:
        total += 2 * pooled * h
    if config.gating.type == "se":
        total += 2 * 2 * h * (h // config.gating.reduction)
    elif config.gating.type != "none":
        total += 2 * h * h
    v, m = config.num_classes, config.classifier.num_mixtures
    total += 2 * h * v * ((2 * m + 1) if config.classifier.type == "moe" else 1)
    if config.classifier.prob_gating:
        total += 2 * v * v
    # a mixture runs every branch, plus its gate FC on the mean frame
    branches = config.mixture.branches
    return total * branches + (2 * sum(config.modalities.values()) * branches if branches > 1 else 0)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


class Runner:
    """One configuration's model, optimizer step and fixed batch."""

    def __init__(self, args, clusters: int | None, precision: str, scheme: str, model: str | None = None) -> None:
        torch.manual_seed(0)
        self.name = model or args.model
        sizes = {} if clusters is None else {"cluster_size": clusters}  # None: the named config's own K
        self.model = create_model(self.name, num_classes=args.num_classes, **sizes).train()
        clusters = self.model.config.pooling.cluster_size
        self.step = TrainStep(self.model, precision=precision, device=torch.device("cpu"), learning_rate=2e-4,
                              master=prepare_bf16(self.model, precision, scheme))
        b, n = args.batch_size, args.num_frames
        self.frames = {name: torch.rand(b, n, size) * 4 - 2 for name, size in self.model.config.modalities.items()}
        self.mask = torch.ones(b, n, dtype=torch.bool)
        self.labels = torch.zeros(b, args.num_classes)
        self.labels[torch.arange(b).repeat_interleave(3), torch.randint(0, args.num_classes, (3 * b,))] = 1
        self.clusters, self.precision = clusters, precision
        self.scheme = scheme if precision == "bf16" else "-"
        self.flops = 3 * forward_flops_per_video(self.model.config, n)
        self.times: list[float] = []

    def __call__(self) -> float:
        start = time.perf_counter()
        self.step(self.frames, self.mask, self.labels)
        return time.perf_counter() - start


def bench_group(args, runners: list) -> None:
    """Warm every runner up, then time them round-robin so they share the machine's drift and noise.

    A runner is a callable returning its seconds, with a ``times`` list that receives them (also used by
    ``bench_infer.py``)."""
    for runner in runners:
        for _ in range(args.warmup):
            runner()
    started = time.perf_counter()
    rounds = 0
    while rounds < args.min_steps or (time.perf_counter() - started < args.min_seconds * len(runners)
                                      and rounds < args.max_steps):
        for runner in runners:
            runner.times.append(runner())
        rounds += 1


def memory_check(args) -> None:
    """Profile one step and report the largest tensor allocated versus the largest weight."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = create_model(args.model, num_classes=args.num_classes, cluster_size=args.clusters[0])
    step = TrainStep(model, precision=args.precisions[0], device=torch.device("cpu"), learning_rate=2e-4,
                     master=prepare_bf16(model, args.precisions[0], args.bf16_schemes[0]))
    b, n = args.batch_size, args.num_frames
    frames = {name: torch.rand(b, n, size) * 4 - 2 for name, size in model.config.modalities.items()}
    mask = torch.ones(b, n, dtype=torch.bool)
    labels = (torch.rand(b, args.num_classes) < 3 / args.num_classes).float()
    step(frames, mask, labels)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True) as prof:
        step(frames, mask, labels)
    # self_cpu_memory_usage: bytes an operator allocated itself (its outputs/workspace), children excluded
    ops = sorted(((e.self_cpu_memory_usage, e.name, e.input_shapes) for e in prof.events()
                  if e.self_cpu_memory_usage > 0), reverse=True)
    weights = [(p.numel() * p.element_size(), n) for n, p in model.named_parameters()]
    if step.master:
        weights += [(m.numel() * 4, n + " (fp32 master)") for n, m in step.master.names.items()]
    largest_weight, weight_name = max(weights)
    print(f"memory check: K={args.clusters[0]} batch {b}x{n} {args.precisions[0]}; largest weight {weight_name} "
          f"{largest_weight / 2**20:.1f} MiB; peak RSS {peak_rss_gb():.2f} GB")
    print("largest allocations by one operator (self), MiB:")
    for size, name, shapes in ops[:8]:
        print(f"  {size / 2**20:9.1f}  {name}  inputs {shapes}")
    over = [op for op in ops if op[0] > largest_weight]
    print("no operator allocated more than the largest weight" if not over else
          f"{len(over)} operator allocations exceed the largest weight (see above)")


def print_row(args, r, ceilings: dict[str, float]) -> float:
    """Print one runner's result line; returns its videos/s."""
    median = statistics.median(r.times)
    achieved = r.flops * args.batch_size / median / 1e9
    print(f"{r.clusters:>4} {r.precision:>9} {r.scheme:>15} {args.batch_size / median:>9.1f} {median:>7.3f} "
          f"{r.flops / 1e9:>11.3f} {100 * achieved / ceilings['fp32']:>10.1f}% "
          f"{100 * achieved / ceilings[r.precision]:>9.1f}% {peak_rss_gb():>11.2f}  {getattr(r, 'name', 'TF2')}",
          flush=True)
    return args.batch_size / median


def model_config(args, clusters: int):
    """The named model's config at ``clusters`` (for its FLOPs; built on the meta device, no memory)."""
    return create_model(args.model, num_classes=args.num_classes, cluster_size=clusters, device="meta").config


def start(args, tf_anchors: str) -> bool:
    """Set the thread count, print the set-up, and say whether the TF2 twin will be timed side by side."""
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, malloc tuned: {tune_malloc()}")
    compare_tf = tfg is not None and args.model == tfg.MODEL_NAME
    if compare_tf:
        tfg.set_threads(torch.get_num_threads())
        print(f"TensorFlow {tfg.tf.__version__} importable: the TF2 model is timed side by side.")
    elif tfg is not None:
        print(f"TensorFlow importable, but its twin exists only for {tfg.MODEL_NAME}: TF2 side-by-side skipped.")
    else:
        print(f"TensorFlow not installed: TF2 side-by-side skipped (reference TF2 figures, videos/s: {tf_anchors}).")
    return compare_tf


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gated_netvlad_256")
    p.add_argument("--clusters", type=int, nargs="+", default=[64, 256])
    p.add_argument("--also", nargs="*", default=[], metavar="MODEL",
                   help="named models timed at their own sizes in the same round-robin as --model at each K, "
                        "e.g. nextvlad_k128_g8; their speed relative to --model is printed")
    p.add_argument("--num-classes", type=int, default=3862)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-frames", type=int, default=300)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--bf16-schemes", nargs="+", default=["master_weights", "autocast"],
                   choices=["master_weights", "autocast"])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--min-steps", type=int, default=5, help="timed rounds at least")
    p.add_argument("--max-steps", type=int, default=15)
    p.add_argument("--min-seconds", type=float, default=12.0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--memory-check", action="store_true", help="profile one step's allocations instead")
    args = p.parse_args(argv)
    compare_tf = start(args, "K=64 fp32 82.9 / bf16 97.9, K=256 fp32 30.8 / bf16 38.0")
    if args.memory_check:
        memory_check(args)
        return 0
    ceilings = {"fp32": matmul_ceiling(torch.float32), "bf16": matmul_ceiling(torch.bfloat16)}
    print(f"matmul ceiling (this run): fp32 {ceilings['fp32']:.0f} GFLOP/s, bf16 {ceilings['bf16']:.0f} GFLOP/s")
    print(f"{'K':>4} {'precision':>9} {'bf16 scheme':>15} {'videos/s':>9} {'step s':>7} {'GFLOP/video':>11} "
          f"{'% fp32 ceil':>11} {'% own ceil':>10} {'peak RSS GB':>11}  model")
    for clusters in args.clusters:
        runners = [Runner(args, size, precision, scheme, model)
                   for model, size in [(args.model, clusters)] + [(name, None) for name in args.also]
                   for precision in args.precisions
                   for scheme in (args.bf16_schemes if precision == "bf16" else ["master_weights"])]
        bench_group(args, runners)
        speeds = [print_row(args, r, ceilings) for r in runners]
        torch_speeds = [(r.precision, r.scheme, v) for r, v in zip(runners, speeds) if r.name == args.model]
        base = {(r.precision, r.scheme): v for r, v in zip(runners, speeds) if r.name == args.model}
        for r, speed in zip(runners, speeds):
            if r.name != args.model:
                print(f"     {r.name} K={r.clusters} / {args.model} K={clusters} ({r.precision} {r.scheme}, same "
                      f"run): {speed / base[(r.precision, r.scheme)]:.2f}x", flush=True)
        del runners
        release_memory()  # the tuned heap keeps freed blocks; give them back before TF allocates its own
        if compare_tf:
            tf_runners = [tfg.TrainRunner(clusters, args.num_classes, precision, args.batch_size, args.num_frames,
                                          3 * forward_flops_per_video(model_config(args, clusters), args.num_frames))
                          for precision in args.precisions]
            bench_group(args, tf_runners)
            for r in tf_runners:
                tf_speed = print_row(args, r, ceilings)
                ratios = ", ".join(f"{scheme if precision == 'bf16' else 'fp32'} {speed / tf_speed:.2f}"
                                   for precision, scheme, speed in torch_speeds if precision == r.precision)
                print(f"     torch / TF2 {r.precision} (same run): {ratios}", flush=True)
            del tf_runners
            release_memory()
    return 0


if __name__ == "__main__":
    sys.exit(main())
