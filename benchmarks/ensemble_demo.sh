#!/bin/bash
# Regenerates the "Greedy ensembles" section of docs/results.md: three small, different models trained on the demo
# data for 3 epochs each (one at a time), greedy selection on the validation split, the selection built into one
# checkpoint, and that checkpoint evaluated and exported.
#
#   bash benchmarks/ensemble_demo.sh [DATA_DIR] [WORK_DIR]     # defaults: ./videopool-demo/data, ./ensemble-demo
#
# The demo data comes from `videopool make-demo-data DATA_DIR` (or `videopool demo`). Runs that already have a
# best.safetensors are reused; the selection reuses its prediction cache.
set -euo pipefail
DATA=${1:-videopool-demo/data}
WORK=${2:-ensemble-demo}
mkdir -p "$WORK/runs"
grep -o 'amx_bf16\|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ' | sed 's/^/CPU flags: /'; echo

common=(--train-data "$DATA/train-*.tfrecord" --val-data "$DATA/validate-*.tfrecord"
        --vocabulary "$DATA/vocabulary.csv" --epochs 3 --batch-size 80 --seed 1 --no-progress
        --set lr_decay_examples=200000 --set checkpoint_every=0)
train() {
  local name=$1; shift
  [ -f "$WORK/runs/$name/best.safetensors" ] && return
  videopool train --out "$WORK/runs/$name" "${common[@]}" "$@"
}
train gated_netvlad --model gated_netvlad_256_small --lr 3e-3 --set num_frames=64
train gated_netfv --model gated_netfv_128_small --lr 3e-3 --set num_frames=32
train gated_dbow --model gated_soft_dbow_4096_small --lr 3e-3 --set num_frames=64

time videopool ensemble select "$WORK"/runs/* --data "$DATA/validate-*.tfrecord" --out "$WORK/select"
time videopool ensemble select "$WORK"/runs/* --data "$DATA/validate-*.tfrecord" --out "$WORK/select"  # cached
# each member on a uniform subsample of its run's training frame count instead of every frame
videopool ensemble select "$WORK"/runs/* --data "$DATA/validate-*.tfrecord" --out "$WORK/select-trained" \
  --member-frames trained
videopool ensemble build "$WORK/select/selection.json" --out "$WORK/ensemble"
time videopool evaluate "$WORK/ensemble" --data "$DATA/validate-*.tfrecord"
videopool export "$WORK/ensemble" --out "$WORK/ensemble.pt2"
