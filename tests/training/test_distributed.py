"""torchrun-style data parallelism with 2 CPU processes (gloo): exact metrics, identical replicas."""

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from videopool.data import Video, write_videos

NUM_CLASSES = 5
MODEL_OVERRIDES = {"cluster_size": 2, "hidden.size": 8}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(1)
    for shard, count in (("train-0", 6), ("train-1", 6), ("val-0", 5), ("val-1", 6), ("val-2", 2)):
        videos = []
        for i in range(count):
            frames = int(rng.integers(2, 7))
            videos.append(Video(id=f"{shard}-{i}", labels=sorted({int(rng.integers(NUM_CLASSES)), int(rng.integers(NUM_CLASSES))}),
                                features={"rgb": rng.uniform(-2, 2, (frames, 1024)).astype(np.float32),
                                          "audio": rng.uniform(-2, 2, (frames, 128)).astype(np.float32)}))
        write_videos(root / f"{shard}.tfrecord", videos)
    return root


def _config(data_dir, out):
    from videopool.training.api import build_config

    return build_config("gated_netvlad_256_small", None, {
        "train_data": [str(data_dir / "train-*.tfrecord")], "num_classes": NUM_CLASSES, "batch_size": 2,
        "max_steps": 3, "precision": "fp32", "workers": 0, "progress": False, "checkpoint_every": 0,
        **MODEL_OVERRIDES}, str(out))


def _worker(rank, world_size, port, data_dir, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    from videopool.data import make_loader
    from videopool.inference import evaluate
    from videopool.models import load_model
    from videopool.training.loop import Trainer

    trainer = Trainer(_config(data_dir, out), NUM_CLASSES)
    summary = trainer.fit()
    # parameters only: BN running statistics are per rank (DDP re-broadcasts rank 0's before each forward)
    torch.save(dict(trainer.model.named_parameters()), os.path.join(out, f"rank{rank}.pt"))
    # every rank evaluates the same checkpoint on its own shard
    torch.distributed.barrier()
    model, _ = load_model(os.path.join(out, "last.safetensors"))
    loader = make_loader([str(data_dir / "val-*.tfrecord")], num_classes=NUM_CLASSES, batch_size=2, strategy="all",
                         num_frames=300, shuffle=False, workers=0, rank=rank, world_size=world_size)
    metrics = evaluate(model, loader, ctx=trainer.ctx)
    scalars = {k: v for k, v in metrics.items() if not hasattr(v, "shape")}
    with open(os.path.join(out, f"metrics{rank}.json"), "w") as f:
        json.dump({"summary": {k: summary[k] for k in ("step", "examples_seen")}, "metrics": scalars}, f)
    torch.distributed.destroy_process_group()


def test_two_processes_train_identical_replicas_and_merge_metrics_exactly(data_dir, tmp_path):
    from videopool.data import make_loader
    from videopool.inference import evaluate
    from videopool.models import load_model

    out = tmp_path / "run"
    out.mkdir()
    for attempt in range(3):
        try:
            mp.spawn(_worker, args=(2, _free_port(), data_dir, str(out)), nprocs=2, join=True)
            break
        except mp.ProcessRaisedException as err:
            # the free port can be taken by another process between probing and binding
            if "address already in use" not in str(err).lower() or attempt == 2:
                raise
    states = [torch.load(out / f"rank{r}.pt") for r in range(2)]
    for name in states[0]:
        assert torch.equal(states[0][name], states[1][name]), name
    results = [json.loads((out / f"metrics{r}.json").read_text()) for r in range(2)]
    assert results[0] == results[1]
    assert results[0]["summary"] == {"step": 3, "examples_seen": 12}  # 3 steps x 2 ranks x batch 2
    # the same checkpoint evaluated by one process over all the data
    model, _ = load_model(str(out / "last.safetensors"))
    loader = make_loader([str(data_dir / "val-*.tfrecord")], num_classes=NUM_CLASSES, batch_size=2, strategy="all",
                         num_frames=300, shuffle=False, workers=0)
    single = evaluate(model, loader)
    assert single["num_videos"] == 13 == results[0]["metrics"]["num_videos"]
    # Batches differ between the runs (each rank pads its own), and float32 GEMMs round a video's scores
    # differently with the batch around it (~6e-8); a lost or repeated video would move these far more.
    for key in ("gap", "hit_at_1", "perr", "map", "map_all_classes", "loss"):
        assert results[0]["metrics"][key] == pytest.approx(single[key], rel=1e-6, abs=1e-9), key
