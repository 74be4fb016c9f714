"""torchrun data-parallel helpers.

``torchrun --nproc-per-node=N -m videopool train ...`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; :func:`init_distributed` reads them and starts the process group (gloo on
CPU, nccl on CUDA). Without them everything runs as a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class DistributedContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> tuple[DistributedContext, torch.device]:
    """Start the process group when launched by torchrun; returns the context and this rank's device."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistributedContext(), device
    ctx = DistributedContext(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)),
                             int(os.environ["WORLD_SIZE"]))
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                rank=ctx.rank, world_size=ctx.world_size)
    return ctx, device


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_ranks_have_data(has_data: bool, ctx: DistributedContext, device: torch.device) -> bool:
    """True while every rank still has a batch, so all ranks take the same number of steps.

    Shards rarely hold equal numbers of videos; stopping at the shortest one (a few
    videos per epoch left out of training) avoids a DDP hang on the last all-reduce.
    """
    if not ctx.enabled:
        return has_data
    flag = torch.tensor([1 if has_data else 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def gather_objects(obj: Any, ctx: DistributedContext) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` when not distributed."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, ctx: DistributedContext) -> Any:
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
