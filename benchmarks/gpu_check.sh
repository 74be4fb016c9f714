#!/usr/bin/env bash
# One prepared GPU check (< 5 min on one GPU): the CUDA tests, bf16 training and inference throughput of gated
# NetVLAD and NeXtVLAD with and without torch.compile, and the reader feeding the GPU through DataLoader workers.
# Run from the repository root with the venv active:   bash benchmarks/gpu_check.sh | tee gpu_check.txt
# Copy the printed figures, with the date and the GPU name, into docs/performance.md. CI never runs this.
set -euo pipefail
export PYTHONUNBUFFERED=1
python - <<'EOF'
import torch
assert torch.cuda.is_available(), "no CUDA device: this script is for a GPU machine"
print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
EOF

echo "== 1. the test suite's CUDA tests (they skip themselves without a GPU)"
timeout 120 python -m pytest -q -x -k "cuda or gpu" tests || echo "CUDA tests FAILED (see above)"

echo "== 2. bf16 training / inference throughput, eager and torch.compile (batch 256 x 300 frames, V = 3,862)"
timeout 150 python - <<'EOF'
import time
import torch
from videopool.models import create_model
from videopool.training.step import TrainStep, prepare_bf16

device = torch.device("cuda")
B, N, V = 256, 300, 3862

def timed(fn, steps=10, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    return B * steps / (time.perf_counter() - start)

for name, k in (("gated_netvlad_256", 64), ("gated_netvlad_256", 256), ("nextvlad_k128_g8", 128)):
    for compiled in (False, True):
        torch.manual_seed(0)
        model = create_model(name, num_classes=V, cluster_size=k).to(device).train()
        frames = {m: torch.rand(B, N, s, device=device) * 4 - 2 for m, s in model.config.modalities.items()}
        mask = torch.ones(B, N, dtype=torch.bool, device=device)
        labels = (torch.rand(B, V, device=device) < 3 / V).float()
        master = prepare_bf16(model, "bf16", "master_weights")
        module = torch.compile(model) if compiled else model
        step = TrainStep(module, precision="bf16", device=device, learning_rate=2e-4, master=master)
        step.model = model
        try:
            train = timed(lambda: step(frames, mask, labels))
            model.eval()
            with torch.inference_mode():
                infer = timed(lambda: module(frames, mask))
            peak = torch.cuda.max_memory_allocated() / 2**30
            print(f"{name} K={k} compile={compiled}: train {train:.0f} videos/s, inference {infer:.0f} videos/s, "
                  f"peak {peak:.1f} GiB")
        except Exception as err:  # a compile failure is a finding, not a reason to stop the check
            print(f"{name} K={k} compile={compiled}: FAILED {type(err).__name__}: {str(err)[:200]}")
        del model, step, module
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
EOF

echo "== 3. reader -> DataLoader workers -> GPU (demo shards at full size: 300 frames, 1,024 + 128 features)"
timeout 150 python - <<'EOF'
import glob, os, tempfile, time
import torch
from videopool.data import make_loader
from videopool.demo.dataset import make_demo_data

root = tempfile.mkdtemp()
make_demo_data(root, train_videos=2000)
shards = sorted(glob.glob(os.path.join(root, "**", "train*.tfrecord"), recursive=True))
print(f"{len(shards)} training shards under {root}")
for workers in (0, 2, 4, 8):
    loader = make_loader(shards, num_classes=3862, batch_size=256, strategy="all", num_frames=300, shuffle=True,
                         workers=workers, device="cuda")
    start, videos = time.perf_counter(), 0
    for batch in loader:
        batch = batch.to("cuda", non_blocking=True)
        videos += len(batch)
    torch.cuda.synchronize()
    print(f"workers={workers}: {videos / (time.perf_counter() - start):.0f} videos/s onto the GPU")
EOF
echo "== done"
