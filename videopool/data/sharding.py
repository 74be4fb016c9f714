"""How a stream of shards is split and shuffled across DataLoader workers and ranks.

Used by :class:`videopool.data.VideoIterableDataset`; kept apart so the rules (which the
dataset's docstring and ``docs`` promise) can be read and tested on their own.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator

import numpy as np
import torch


def resolve_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``(rank, world_size)`` from the arguments, else an initialized ``torch.distributed``,
    else the ``RANK`` / ``WORLD_SIZE`` environment variables (torchrun), else ``(0, 1)``."""
    if (rank is None) != (world_size is None):
        raise ValueError("pass both rank and world_size, or neither")
    if rank is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return int(rank), int(world_size)


def partition_files(num_files: int, reader: int, num_readers: int) -> list[tuple[int, int, int]]:
    """What global reader ``reader`` of ``num_readers`` reads: ``(file position, modulus, remainder)``.

    With at least as many files as readers, files go round-robin (reader ``g`` takes file
    positions ``g, g + G, g + 2G, ...``) and every record of them (modulus 1). With fewer
    files, file ``f`` is shared by the readers ``f, f + F, f + 2F, ...``; the ``j``-th of its
    ``R`` readers takes the records whose index ``i`` has ``i % R == j``. Either way each
    record has exactly one reader.
    """
    if num_files >= num_readers:
        return [(position, 1, 0) for position in range(reader, num_files, num_readers)]
    if num_files == 0:
        return []
    position = reader % num_files
    sharers = len(range(position, num_readers, num_files))
    return [(position, sharers, reader // num_files)]


def shuffle_buffer(items: Iterable, size: int, rng: np.random.Generator) -> Iterator:
    """Shuffle a stream through a buffer holding at most ``size`` items.

    Once the buffer is full, each incoming item replaces a uniformly chosen buffered one,
    which is yielded; the rest is yielded in random order at the end. An item can come out
    at most ``size`` positions before its input position.
    """
    buffer: list = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        slot = int(rng.integers(size))
        yield buffer[slot]
        buffer[slot] = item
    for slot in rng.permutation(len(buffer)):
        yield buffer[slot]
