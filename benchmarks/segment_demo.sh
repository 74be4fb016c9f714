#!/usr/bin/env bash
# Segment localisation on the demo data (docs/results.md, "Segment localisation"): a video-level gated NetVLAD
# trained on the demo's train split, then the context-ignoring and the context-aware segment classifiers
# fine-tuned from it on the demo's segment-rated split, and their average; prints segment mAP@100,000 of each on
# the held-out segment split. Usage: benchmarks/segment_demo.sh [DIR] (default /tmp/seg_demo). The budget is
# small on purpose (the video model gets 1 epoch, each segment model 2; VIDEO_EPOCHS / SEGMENT_EPOCHS change it):
# about an hour on 2 CPU cores shared with other jobs.
set -euo pipefail
DIR=${1:-/tmp/seg_demo}
D=$DIR/data
EPOCHS=${SEGMENT_EPOCHS:-2}
VIDEO_EPOCHS=${VIDEO_EPOCHS:-1}
mkdir -p "$DIR"
[ -f "$D/manifest.json" ] || videopool make-demo-data "$D" --test-videos 0 --quiet
[ -f "$D/segments.json" ] || python -c "from videopool.demo.segments import make_segment_splits as m; \
m('$D', train_videos=1500, validate_videos=500)"
[ -f "$DIR/video/best.safetensors" ] || videopool train --model gated_netvlad_256_small \
  --train-data "$D/train-*.tfrecord" --val-data "$D/validate-*.tfrecord" --vocabulary "$D/vocabulary.csv" \
  --out "$DIR/video" --epochs "$VIDEO_EPOCHS" --lr 3e-3 --batch-size 80 --precision fp32 --checkpoint-every 0 --no-progress \
  --set num_frames=64 --set lr_decay_examples=200000
for NAME in paper_context_ignoring paper_context_aware; do
  [ -f "$DIR/$NAME/last.safetensors" ] || videopool train-segments --from "$DIR/video" --model "$NAME" \
    --data "$D/segments-train-*.tfrecord" --val-data "$D/segments-validate-*.tfrecord" --out "$DIR/$NAME" \
    --epochs "$EPOCHS" --lr 1e-3 --precision fp32 --no-progress --set fc_size=512 --set video_frames=64
done
videopool evaluate-segments "$DIR/paper_context_ignoring" --data "$D/segments-validate-*.tfrecord" --json \
  > "$DIR/ignoring.json"
videopool evaluate-segments "$DIR/paper_context_aware" --data "$D/segments-validate-*.tfrecord" --json \
  > "$DIR/aware.json"
videopool evaluate-segments "$DIR/paper_context_ignoring" "$DIR/paper_context_aware" \
  --data "$D/segments-validate-*.tfrecord" --json > "$DIR/average.json"
python - "$DIR" "$D" <<'PY'
import json, subprocess, sys
root, data = sys.argv[1], sys.argv[2]
video = json.loads(subprocess.run(["videopool", "evaluate", f"{root}/video", "--data", f"{data}/segments-validate-*.tfrecord",
                                   "--json"], check=True, capture_output=True, text=True).stdout)
print(f"video-level model on the segment split's videos: GAP@20 {video['gap']:.4f}, mAP {video['map']:.4f}")
for name in ("ignoring", "aware", "average"):
    r = json.load(open(f"{root}/{name}.json"))
    v = r["video_level"]
    print(f"{name:<9} segment mAP@100k {r['segment_map']:.4f} over {r['num_classes']} classes, "
          f"{r['num_segments']} rated segments; whole videos: GAP@20 {v['gap']:.4f}, mAP {v['map']:.4f}")
PY
