"""Runtime helpers every floor may use: distributed context, device and precision choice, malloc tuning,
atomic file writes, seeding and the strict configuration parser. Nothing here imports the rest of videopool."""

from videopool.core.distributed import DistributedContext, init_distributed, shutdown_distributed
from videopool.core.files import atomic_path, link_atomically
from videopool.core.malloc import release_memory, tune_malloc
from videopool.core.precision import PRECISIONS, autocast, resolve_device, resolve_precision
from videopool.core.rng import rng_state, seed_everything, set_rng_state
from videopool.core.schema import ConfigError, check_choice, closest_hint, parse_dataclass

__all__ = [
    "PRECISIONS", "ConfigError", "DistributedContext", "atomic_path", "autocast", "check_choice", "closest_hint",
    "init_distributed", "link_atomically", "parse_dataclass", "release_memory", "resolve_device",
    "resolve_precision", "rng_state", "seed_everything", "set_rng_state", "shutdown_distributed", "tune_malloc",
]  # fmt: skip
