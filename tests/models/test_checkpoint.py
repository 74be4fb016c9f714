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


def test_the_streamed_file_is_safetensors_with_the_checksum_of_its_tensors(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = {"a": torch.randn(3, 4), "b": torch.tensor(5), "c": torch.zeros(0), "d": torch.tensor([True, False]),
               "e": torch.randn(7, dtype=torch.float64), "f": torch.arange(3, dtype=torch.uint8),
               "g": torch.randn(5).bfloat16()}
    path = str(tmp_path / "w.safetensors")
    ckpt.save_weights(path, tensors, {"step": 3})
    loaded = load_file(path)  # the safetensors library reads it
    for name, tensor in tensors.items():
        expected = tensor.float() if tensor.is_floating_point() else tensor  # floating tensors are stored as fp32
        assert loaded[name].dtype == expected.dtype and torch.equal(loaded[name], expected), name
    with safe_open(path, framework="pt") as f:
        assert f.metadata()[ckpt.CHECKSUM_KEY] == ckpt.data_checksum(path)
    assert ckpt.read_info(path) == {"step": 3}


def test_a_changed_byte_is_a_corrupt_checkpoint_and_old_files_still_load(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    ckpt.save_weights(str(path), {"w": torch.ones(100)}, {"step": 1})
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40  # one bit of the last weight
    path.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointCorruptError, match="is corrupt: its tensors do not match the checksum"):
        ckpt.read_weights(str(path))
    assert ckpt.read_weights(str(path), verify=False)["w"][-1] != 1  # what the check refused
    # written before checksums existed (the safetensors library, no checksum key): loads unchecked
    save_file({"w": torch.ones(2)}, str(tmp_path / "old.safetensors"), metadata={"videopool": '{"step": 2}'})
    assert torch.equal(ckpt.read_weights(str(tmp_path / "old.safetensors"))["w"], torch.ones(2))


def test_a_truncated_checkpoint_names_the_previous_step(tmp_path):
    run = tmp_path / "run"
    for step in (2, 4):
        ckpt.save_weights(str(run / "checkpoints" / f"step-{step:06d}.safetensors"), {"w": torch.ones(50)},
                          {"step": step})
    path = run / "checkpoints" / "step-000004.safetensors"
    path.write_bytes(path.read_bytes()[:60])  # cut short (e.g. copied from a full disk by hand)
    with pytest.raises(ValueError, match=r"is not a readable safetensors file: .*; use the previous step checkpoint "
                                         r".*step-000002\.safetensors \(step 2\)$"):
        ckpt.read_info(str(path))


def test_a_checkpoint_from_before_a_config_field_existed_still_loads(tmp_path):
    # Written by an older videopool: its stored model config lacks sections and fields added since (they default).
    from videopool.models import create_model, load_model

    model = create_model("gated_netvlad_256_small", num_classes=5).eval()
    stored = model.config.to_dict()
    stored.pop("mixture", None)
    stored["gating"].pop("reduction", None)
    path = str(tmp_path / "old.safetensors")
    ckpt.save_weights(path, model.state_dict(), {"model_config": stored, "num_classes": 5})
    loaded, _ = load_model(path)
    frames = {m: torch.randn(2, 4, d) for m, d in model.config.modalities.items()}
    torch.testing.assert_close(loaded(frames), model(frames), rtol=0, atol=0)
    stored["hidden"]["size"] = 7  # a real difference is still refused
    ckpt.save_weights(path, model.state_dict(), {"model_config": stored, "num_classes": 5})
    with pytest.raises(ValueError, match="different model configuration"):
        ckpt.load_weights_into(create_model("gated_netvlad_256_small", num_classes=5), path)
