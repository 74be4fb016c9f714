import os
import platform
import subprocess
import sys

import pytest
import torch

from videopool.core import precision


def test_precision_rule(monkeypatch):
    cpu = torch.device("cpu")
    assert precision.resolve_precision("fp32", cpu) == "fp32"
    assert precision.resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(precision, "cpu_has_amx_bf16", lambda: True)
    assert precision.resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(precision, "cpu_has_amx_bf16", lambda: False)
    assert precision.resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(ValueError, match="auto, bf16, fp32"):
        precision.resolve_precision("fp16", cpu)


def _tune_in_subprocess(env_value):
    env = dict(os.environ)
    env.pop("VIDEOPOOL_NO_MALLOC_TUNING", None)
    if env_value is not None:
        env["VIDEOPOOL_NO_MALLOC_TUNING"] = env_value
    code = "from videopool.core.malloc import tune_malloc; print(tune_malloc())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc-only")
def test_malloc_tuning_applies_on_glibc_and_can_be_disabled():
    assert _tune_in_subprocess(None) == "True"
    assert _tune_in_subprocess("1") == "False"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc-only")
def test_release_memory_returns_a_freed_tuned_heap_to_the_kernel():
    code = """
from videopool.core.malloc import release_memory, tune_malloc
tune_malloc()
import numpy as np

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

blocks = [np.ones(1 << 20) for _ in range(64)]  # 512 MiB in 8 MiB heap blocks (mmap is off)
del blocks
kept = rss_mib()
release_memory()
print(kept, rss_mib())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    kept, released = map(float, out)
    assert kept - released > 300, (kept, released)
