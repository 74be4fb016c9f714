"""One check shared by the layer and config tests: a model exports through ``videopool export`` and the program
scores like the model it came from."""

from __future__ import annotations

import torch

from videopool.inference import export_model, load_exported
from videopool.models.checkpoint import save_weights


def assert_exports_like_the_model(model, tmp_path, shapes=((3, 6),), seed: int = 0) -> dict:
    """Save ``model`` (eval mode), export it, and compare the program's probabilities with the model's on random
    batches of the given ``(videos, frames)`` shapes, the second video of each cut to 2 real frames. Returns the
    export's metadata."""
    model = model.eval()
    num_classes = model.output_size
    checkpoint = tmp_path / "model.safetensors"
    save_weights(str(checkpoint), model.state_dict(), {"model_config": model.config.to_dict(),
                                                       "num_classes": num_classes})
    written = export_model(str(checkpoint), str(tmp_path / "model.pt2"))
    program, metadata = load_exported(str(tmp_path / "model.pt2"))
    assert metadata["num_classes"] == written["num_classes"] == num_classes
    generator = torch.Generator().manual_seed(seed)
    for videos, frames in shapes:
        inputs = {name: torch.randn(videos, frames, size, generator=generator)
                  for name, size in model.config.modalities.items()}
        mask = torch.ones(videos, frames, dtype=torch.bool)
        mask[1, 2:] = False
        with torch.no_grad():
            torch.testing.assert_close(program(inputs, mask), model(inputs, mask), rtol=1e-5, atol=1e-6)
    return metadata
