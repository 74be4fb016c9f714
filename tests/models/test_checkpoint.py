import os

import pytest
import torch
from torch import nn

from videopool.core.files import atomic_path
from videopool.models import checkpoint as ckpt


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path):
    path = tmp_path / "last.safetensors"
    ckpt.save_weights(str(path), {"w": torch.ones(3)}, {"step": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(str(path)) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half a checkpoint")
            raise RuntimeError("killed before the rename")
    assert ckpt.read_info(str(path)) == {"step": 1}
    assert torch.equal(ckpt.read_weights(str(path))["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["last.safetensors"]  # no temp file left behind


class _Config:
    def __init__(self, size):
        self.size = size

    def to_dict(self):
        return {"size": self.size, "kind": "tiny"}


class _Model(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.config = _Config(size)
        self.linear = nn.Linear(size, 2)


def test_weights_round_trip_as_fp32_with_metadata(tmp_path):
    model = _Model(3)
    path = str(tmp_path / "w.safetensors")
    state = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    ckpt.save_weights(path, state, {"model_config": model.config.to_dict(), "step": 7})
    assert all(t.dtype == torch.float32 for t in ckpt.read_weights(path).values())
    other = _Model(3)
    info = ckpt.load_weights_into(other, path)
    assert info["step"] == 7
    assert torch.equal(other.linear.weight, model.linear.weight.to(torch.bfloat16).float())


def test_checkpoint_from_another_config_is_a_clear_error(tmp_path):
    path = str(tmp_path / "w.safetensors")
    ckpt.save_weights(path, _Model(3).state_dict(), {"model_config": _Model(3).config.to_dict()})
    with pytest.raises(ValueError, match=r"different model configuration:\n  size: checkpoint=3 model=4"):
        ckpt.load_weights_into(_Model(4), path)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ckpt.read_info(str(tmp_path / "nope.safetensors"))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not written by videopool"):
        ckpt.read_info(str(tmp_path / "plain.safetensors"))
    with pytest.raises(FileNotFoundError, match="no best.safetensors or last.safetensors"):
        ckpt.find_checkpoint(str(tmp_path))
