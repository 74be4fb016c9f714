"""What every benchmark prints beside its figures: the CPU's bf16 flags and model (bf16 is ~7x faster than fp32 with
AMX and can be slower with AVX-512 BF16 alone), and a way to run a ``videopool`` command in-process."""

from __future__ import annotations

import contextlib
import io

BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def _cpuinfo() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return None


def cpu_flags(flags: tuple[str, ...] = BF16_FLAGS) -> str:
    """Which of ``flags`` the CPU has, space separated (``"neither ..."`` when none, ``"unknown"`` off Linux)."""
    text = _cpuinfo()
    if text is None:
        return "unknown"
    words = set(text.split())
    return " ".join(flag for flag in flags if flag in words) or f"none of {'/'.join(flags)}"


def cpu_model() -> str:
    """The ``model name`` line of /proc/cpuinfo (``"?"`` when there is none)."""
    text = _cpuinfo() or ""
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")


def videopool_command(*argv: str) -> str:
    """Run ``videopool ARGV`` in this process and return what it printed (it must succeed)."""
    from videopool.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(list(argv))
    if status != 0:
        raise SystemExit(f"videopool {' '.join(argv)} exited with {status}")
    return out.getvalue()
