"""ONNX export (videopool.inference.onnx_export): onnxruntime on random inputs of several batch sizes and frame
counts, padded videos included, scores like the eager model (|difference| <= 1e-5 on probabilities; measured
~1e-7) for gated NetVLAD, NeXtVLAD, attention-similarity NetVLAD, an LSTM and a GRU; the graph's names, dynamic
axes and metadata; the budget refusal. Skipped only where onnx / onnxscript / onnxruntime are not installed
(pip install -e ".[export]")."""

import os

import pytest
import torch

onnx = pytest.importorskip("onnx", reason="ONNX export needs onnx: pip install -e '.[export]'")
pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript: pip install -e '.[export]'")
onnxruntime = pytest.importorskip("onnxruntime", reason="the check runs onnxruntime: pip install -e '.[export]'")

from videopool.inference.export import ExportError  # noqa: E402
from videopool.inference.onnx_export import export_onnx, read_onnx_metadata, run_onnx  # noqa: E402
from videopool.models import create_model, save_weights  # noqa: E402
from videopool.models.storage import ModelTooLargeError  # noqa: E402

NUM_CLASSES = 7
TOLERANCE = 1e-5
# (videos, frames): one video of one frame, frame counts the graph was not traced with, a batch of 9
SHAPES = ((1, 1), (2, 4), (5, 33), (9, 120))
MODELS = {
    "gated_netvlad": ("gated_netvlad_256_small", {"cluster_size": 4, "hidden.size": 16}),
    "nextvlad": ("nextvlad_k128_g8_small", {"pooling.cluster_size": 8, "hidden.size": 16}),
    "attention_netvlad": ("attention_netvlad_256_small", {"cluster_size": 4, "hidden.size": 16}),
    "lstm": ("lstm_2x1024_small", {"pooling.hidden_size": 8, "hidden.size": 16}),
    "gru_early_fusion": ("gru_2x1200_small", {"pooling.hidden_size": 8, "hidden.size": 16}),
}


def _checkpoint(name, tmp_path):
    config, settings = MODELS[name]
    torch.manual_seed(0)
    model = create_model(config, num_classes=NUM_CLASSES, **settings).eval()
    with torch.no_grad():  # statistics that matter, so that eval-mode batch norm is what gets exported
        for buffer_name, buffer in model.named_buffers():
            if buffer_name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif buffer_name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    path = tmp_path / "model.safetensors"
    save_weights(str(path), model.state_dict(), {"model_config": model.config.to_dict(), "num_classes": NUM_CLASSES})
    return model, str(path)


def _batch(model, videos, frames, generator):
    inputs = {name: torch.randn(videos, frames, size, generator=generator)
              for name, size in model.config.modalities.items()}
    mask = torch.ones(videos, frames, dtype=torch.bool)
    for v in range(1, videos, 2):  # every other video padded to a shorter length
        mask[v, max(1, frames // (v + 1)):] = False
    return inputs, mask


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``name -> (model, checkpoint, onnx path, metadata)``, each model exported once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            folder = tmp_path_factory.mktemp(name)
            model, checkpoint = _checkpoint(name, folder)
            out = str(folder / "model.onnx")
            cache[name] = model, checkpoint, out, export_onnx(checkpoint, out)
        return cache[name]

    return get


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnxruntime_scores_like_the_eager_model(name, exported):
    model, _, out, metadata = exported(name)
    assert metadata["check"] is not None and metadata["check"] <= 1e-4 and metadata["opset"] == 18
    session = onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(1)
    for videos, frames in SHAPES:
        inputs, mask = _batch(model, videos, frames, generator)
        got = torch.from_numpy(run_onnx(session, inputs, mask))
        with torch.no_grad():
            expected = model(inputs, mask)
        assert got.shape == (videos, NUM_CLASSES)
        torch.testing.assert_close(got, expected, rtol=0, atol=TOLERANCE, msg=f"{name} at {videos}x{frames}")


def test_the_graph_has_named_inputs_dynamic_axes_and_metadata(exported):
    model, checkpoint, out, _ = exported("gated_netvlad")
    graph = onnx.load(out)
    assert [entry.version for entry in graph.opset_import if entry.domain == ""] == [18]

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    inputs = {value.name: dims(value) for value in graph.graph.input}
    assert inputs == {"rgb": ["batch", "frames", 1024], "audio": ["batch", "frames", 128], "mask": ["batch", "frames"]}
    assert {value.name: dims(value) for value in graph.graph.output} == {"probabilities": ["batch", NUM_CLASSES]}
    metadata = read_onnx_metadata(out)
    assert metadata["num_classes"] == NUM_CLASSES and metadata["modalities"] == {"rgb": 1024, "audio": 128}
    assert metadata["model_config"] == model.config.to_dict() and metadata["source"] == checkpoint


def test_an_oversized_graph_is_refused_and_nothing_is_written(exported, tmp_path, monkeypatch):
    from videopool.inference import onnx_export

    _, checkpoint, out, _ = exported("gated_netvlad")
    graph = onnx.load(out)
    del graph.metadata_props[:]

    def made_above(*args):  # the graph exported above (a fresh copy each call): this test is about the budget
        copy = onnx.ModelProto()
        copy.CopyFrom(graph)
        return copy

    monkeypatch.setattr(onnx_export, "to_onnx", made_above)
    target = tmp_path / "model.onnx"
    with pytest.raises(ModelTooLargeError, match=rf"the ONNX file would be {os.path.getsize(out) // 1000:,}"
                                                 r",\d{3} bytes, [\d,]+ over --max-model-bytes 1,000; nothing was "
                                                 r"written; no storage mode fits"):
        export_onnx(checkpoint, str(target), max_bytes=1000)
    assert os.listdir(tmp_path) == []
    export_onnx(checkpoint, str(target), max_bytes=os.path.getsize(out))  # at the budget: written
    assert os.path.getsize(target) == os.path.getsize(out)


def test_an_old_opset_is_a_user_error(tmp_path):
    _, checkpoint = _checkpoint("gated_netvlad", tmp_path)
    with pytest.raises(ValueError, match="--opset 17 is too old: .* give --opset 18 or newer"):
        export_onnx(checkpoint, str(tmp_path / "model.onnx"), opset=17)
    assert issubclass(ExportError, RuntimeError)  # a model that cannot be exported is not a user's typo


@pytest.mark.slow  # two members traced and exported, then a bf16 copy loaded: ~10 s of CPU
def test_a_one_model_ensemble_exports_and_stores_like_a_single_model(tmp_path):
    """The exporter and the storage modes are generic over a module taking (frames, mask): the ensemble of
    videopool.models.ensemble (members with their own frame subsampling and weights) goes through both."""
    from videopool.models import load_model
    from videopool.models.ensemble import EnsembleClassifier, EnsembleConfig, EnsembleMember
    from videopool.models.storage import save_model

    torch.manual_seed(0)
    members = [create_model("gated_netvlad_256_small", num_classes=NUM_CLASSES, cluster_size=2, **{"hidden.size": 8}),
               create_model("nextvlad_k128_g8_small", num_classes=NUM_CLASSES, **MODELS["nextvlad"][1])]
    config = EnsembleConfig(members=[EnsembleMember(model=members[0].config, weight=2.0, num_frames=4),
                                     EnsembleMember(model=members[1].config, weight=1.0)])
    ensemble = EnsembleClassifier(config).eval()
    info = {"model_config": config.to_dict(), "num_classes": NUM_CLASSES}
    checkpoint = str(tmp_path / "ensemble.safetensors")
    save_weights(checkpoint, ensemble.state_dict(), info)
    metadata = export_onnx(checkpoint, str(tmp_path / "ensemble.onnx"))
    assert metadata["check"] is not None and metadata["modalities"] == {"rgb": 1024, "audio": 128}
    session = onnxruntime.InferenceSession(str(tmp_path / "ensemble.onnx"), providers=["CPUExecutionProvider"])
    bf16 = str(tmp_path / "ensemble-bf16.safetensors")
    save_model(bf16, ensemble, info, "bf16")
    stored, stored_info = load_model(bf16)
    assert type(stored) is EnsembleClassifier and stored_info["storage"]["mode"] == "bf16"
    generator = torch.Generator().manual_seed(2)
    for videos, frames in SHAPES[1:3]:
        inputs, mask = _batch(ensemble, videos, frames, generator)
        with torch.no_grad():
            expected = ensemble(inputs, mask)
            torch.testing.assert_close(stored(inputs, mask), expected, rtol=0, atol=2e-2)
        got = torch.from_numpy(run_onnx(session, inputs, mask))
        torch.testing.assert_close(got, expected, rtol=0, atol=TOLERANCE)
