import os
import platform
import subprocess
import sys

import pytest
import torch

from videopool.training import precision


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
    code = "from videopool.training.malloc import tune_malloc; print(tune_malloc())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc-only")
def test_malloc_tuning_applies_on_glibc_and_can_be_disabled():
    assert _tune_in_subprocess(None) == "True"
    assert _tune_in_subprocess("1") == "False"
