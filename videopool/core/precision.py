"""Device and precision choice.

Rule for ``precision="auto"``: bf16 on CUDA devices that support it
(``torch.cuda.is_bf16_supported()``) and on CPUs with AMX (``amx_bf16`` in the CPU flags:
bf16 GEMMs measured at ~6x the fp32 rate on a Sapphire Rapids VM); fp32 everywhere else.
CPUs with ``avx512_bf16`` but no AMX get fp32: on such a 2-vCPU VM torch 2.13's bf16 GEMM
measured 44 GFLOP/s against 89 for fp32 (n=2048, same run), so bf16 would be slower.
``--precision bf16`` still forces it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions: argument parsers read PRECISIONS, and ``videopool --help`` must not
# wait ~1.5 s for torch (measured 0.06 s against 1.8 s).
PRECISIONS = ("auto", "bf16", "fp32")


@functools.lru_cache(maxsize=None)
def cpu_has_amx_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return "amx_bf16" in flags
    except OSError:
        pass
    return False


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` (CUDA when this torch sees a GPU, else the CPU), or the named device, checked to exist here.

    Raises :class:`~videopool.core.errors.UserError` for a string torch does not read as a device, for a device
    this torch build or machine does not have (``cuda`` on a CPU-only torch), and for a GPU index out of range."""
    import torch

    from videopool.core.errors import UserError

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "torch sees no CUDA GPU on this machine")
            raise UserError(f"--device {device!r}: {why} (torch {torch.__version__}); use --device cpu or auto")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise UserError(f"--device {device!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
        return resolved
    backend = getattr(torch, resolved.type, None)  # torch.mps, torch.xpu, ...
    available = getattr(backend, "is_available", None)
    if available is None or not available():
        raise UserError(f"--device {device!r}: no {resolved.type} device is available to this torch; "
                        "use --device cpu or auto")
    return resolved


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"bf16"`` or ``"fp32"`` for ``precision`` in {auto, bf16, fp32} on ``device``."""
    import torch

    if precision not in PRECISIONS:
        from videopool.core.errors import UserError

        raise UserError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_amx_bf16() else "fp32"


def autocast(device: torch.device, precision: str):
    """bf16 autocast context for ``precision == "bf16"``, a no-op context otherwise."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
