"""Compact storage and ONNX on the demo data (docs/results.md, section "Compact storage"): each storage mode's file
size and validation GAP change, the full-size models' sizes by mode (from shapes alone), and the ONNX graph's GAP
under onnxruntime.

    videopool demo                                            # trains videopool-demo/runs/gated_netvlad_256_small
    python benchmarks/storage_results.py --run videopool-demo/runs/gated_netvlad_256_small \
        --data 'videopool-demo/data/validate-*.tfrecord' --out /tmp/storage [--no-onnx]

Every file is written by ``videopool export`` itself (``videopool.cli.main.main``) and scored with ``evaluate`` on
all frames of every validation video, as ``videopool evaluate FILE --data ...`` does; the ONNX graph is run with
onnxruntime on the same batches and scored with the same GAP@20.
"""

from __future__ import annotations

import argparse
import os
import platform
from machine import cpu_flags, videopool_command as command  # noqa: E402

FULL_SIZE = ["gated_netvlad_256", "nextvlad_k112_g8_h2048", "nl_netvlad_64_moe8", "gru_2x1200"]


def loader_for(data: str, info):
    from videopool.data.loader import make_loader

    return make_loader([data], num_classes=int(info["num_classes"]), batch_size=64, strategy="all", num_frames=300,
                       shuffle=False, workers=0, features=info["model_config"].get("modalities"), trainable=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a run directory or checkpoint")
    parser.add_argument("--data", required=True, help="labelled validation TFRecords (a glob)")
    parser.add_argument("--out", required=True, help="folder for the written files")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX row")
    args = parser.parse_args()

    import torch

    from videopool.inference import evaluate
    from videopool.models import create_model, load_model
    from videopool.models.storage import STORAGE_MODES, sizes_by_mode

    torch.set_num_threads(int(os.environ.get("VIDEOPOOL_THREADS", "1")))
    os.makedirs(args.out, exist_ok=True)
    print(f"CPU flags: {cpu_flags()}; torch {torch.__version__}; {platform.processor() or platform.machine()}\n")
    original, info = load_model(args.run)
    reference = original.state_dict()
    rows, base_gap = [], None
    for mode in STORAGE_MODES:
        path = os.path.join(args.out, f"model_{mode}.safetensors")
        command("export", args.run, "--out", path, "--storage", mode)
        model, stored = load_model(path)
        worst = max(float((model.state_dict()[name] - tensor).abs().max()) for name, tensor in reference.items()
                    if tensor.is_floating_point())
        loss = stored.get("train_config", {}).get("loss", "bce_sum")
        result = evaluate(model, loader_for(args.data, stored), loss=loss)
        base_gap = result["gap"] if base_gap is None else base_gap
        rows.append((mode, os.path.getsize(path), result, worst))
    fp32_bytes = rows[0][1]
    print("| storage | file bytes | vs fp32 | GAP@20 | ΔGAP vs fp32 | hit@1 | mAP | max abs weight change |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode, size, result, worst in rows:
        print(f"| {mode} | {size:,} | {size / fp32_bytes:.3f} | {result['gap']:.4f} | "
              f"{result['gap'] - base_gap:+.5f} | {result['hit_at_1']:.4f} | {result['map']:.4f} | {worst:.2e} |")

    if not args.no_onnx:
        import onnxruntime

        from videopool.inference.onnx_export import run_onnx
        from videopool.metrics import gap_at_k

        path = os.path.join(args.out, "model.onnx")
        printed = command("export", args.run, "--out", path)
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        scores, eager, labels = [], [], []
        with torch.no_grad():
            for batch in loader_for(args.data, info):
                scores.append(torch.from_numpy(run_onnx(session, batch.frames, batch.mask)))
                eager.append(original(batch.frames, batch.mask))
                labels.append(batch.labels)
        scores, eager, labels = torch.cat(scores), torch.cat(eager), torch.cat(labels)
        check = printed.splitlines()[0].split("; ")[-1].rstrip(")")
        print(f"\nONNX graph (opset 18; export's self-check: {check}): {os.path.getsize(path):,} bytes; GAP@20 "
              f"{gap_at_k(scores, labels, 20):.4f} (eager {gap_at_k(eager, labels, 20):.4f}); largest probability "
              f"difference from eager over {len(labels)} videos: {float((scores - eager).abs().max()):.2e}")

    print("\n| full-size model (V = 3,862) | parameters | fp32 bytes | bf16 | fp16 | int8 | int8 copies in 1 GB |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name in FULL_SIZE:
        model = create_model(name, device="meta")
        sizes = sizes_by_mode(model, {"model_config": model.config.to_dict(), "num_classes": 3862})
        parameters = sum(p.numel() for p in model.parameters())
        room = int(10**9 // sizes["int8"])
        print(f"| {name} | {parameters:,} | {sizes['fp32']:,} | {sizes['bf16']:,} | {sizes['fp16']:,} | "
              f"{sizes['int8']:,} | {room} |")


if __name__ == "__main__":
    main()
