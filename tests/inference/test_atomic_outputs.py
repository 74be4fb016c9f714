"""Every file that evaluate/predict/export write is atomic and a full disk is one message (docs/reliability.md,
section 1): a failure mid-file leaves the previous file byte for byte (or none) and no temporary file; the command
line prints one line and exits with 1. The disk fills up for real in the middle of the temporary file
(:func:`tests.faults.full_disk`)."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from tests.faults import full_disk, temporaries
from tests.tiny_run import NUM_CLASSES, validate_glob
from videopool.cli.main import main
from videopool.core import files
from videopool.core.files import DiskFullError, atomic_path, atomic_write, deferred_write_errors, remove_temporaries
from videopool.data import make_loader
from videopool.inference import SegmentSubmissionWriter, VideoPredictionWriter, export_model, write_predictions
from videopool.metrics import plot_ap_vs_frequency, plot_precision_recall
from videopool.models import load_model


@pytest.fixture(scope="module")
def traced(trained_run):
    """The trained run's torch.export program, traced once: these tests are about writing it."""
    from videopool.inference import export

    model, _ = load_model(str(trained_run))
    return export.trace(model)


@pytest.fixture
def fast_export(traced, monkeypatch):
    from videopool.inference import export

    monkeypatch.setattr(export, "trace", lambda model, dtype=None: traced)


def _loader(tiny_data):
    return make_loader([validate_glob(tiny_data)], num_classes=NUM_CLASSES, batch_size=4, strategy="all",
                       num_frames=300, shuffle=False, workers=0)


def _write_predictions(run, tiny_data, out):
    model, _ = load_model(str(run))
    return write_predictions(model, _loader(tiny_data), str(out))


def _plot(out):
    rng = np.random.default_rng(0)
    return plot_ap_vs_frequency(rng.random(6), rng.integers(0, 9, 6), str(out))


def _pr_plot(out):
    rng = np.random.default_rng(1)
    return plot_precision_recall((np.sort(rng.random(50))[::-1], rng.random(50) < 0.3, 20), str(out))


def _submission(out):
    writer = SegmentSubmissionWriter([0, 1, 2])
    writer.add(["v:0", "v:5", "w:0"], np.random.default_rng(2).random((3, 4)))
    writer.write(str(out))


OUTPUTS = {
    # case: (file name, write it given (trained run, tiny data, path), bytes before the disk is full)
    "predictions CSV": ("predictions.csv", _write_predictions, 100),
    "segment submission CSV": ("submission.csv", lambda run, data, out: _submission(out), 10),
    "AP plot (PNG)": ("ap.png", lambda run, data, out: _plot(out), 500),
    "precision-recall plot (PNG)": ("pr.png", lambda run, data, out: _pr_plot(out), 500),
    "exported model (.pt2)": ("model.pt2", lambda run, data, out: export_model(str(run), str(out)), 2000),
}


@pytest.mark.parametrize("case", list(OUTPUTS))
def test_a_full_disk_leaves_the_previous_file(case, trained_run, tiny_data, tmp_path, monkeypatch, fast_export):
    name, write, room = OUTPUTS[case]
    open_temporary = files._open_temporary
    out = tmp_path / name
    with open(out, "wb") as f:
        f.write(b"the previous file")
    hits = full_disk(monkeypatch, str(out), room)
    with pytest.raises(DiskFullError) as raised:
        write(trained_run, tiny_data, out)
    assert hits == [str(out)] and str(raised.value) == f"disk full while writing {out}"
    assert out.read_bytes() == b"the previous file"
    assert temporaries(str(tmp_path)) == []
    monkeypatch.setattr(files, "_open_temporary", open_temporary)  # room on the disk again
    write(trained_run, tiny_data, out)  # the whole file, in place
    assert out.stat().st_size > len(b"the previous file") and temporaries(str(tmp_path)) == []


def test_an_error_while_streaming_predictions_leaves_no_file(tmp_path):
    out = tmp_path / "predictions.csv"
    with pytest.raises(ValueError, match="predictions must be"):
        with VideoPredictionWriter(str(out), top_k=2) as writer:
            writer.write_batch(["a", "b"], np.ones((2, 3)))
            writer.write_batch(["c"], np.ones((2, 3)))  # wrong shape, half-way through the file
    assert not out.exists() and os.listdir(tmp_path) == []
    with VideoPredictionWriter(str(out), top_k=2) as writer:
        writer.write_batch(["a"], np.array([[0.1, 0.9, 0.5]]))
    assert out.read_text() == "VideoId,LabelConfidencePairs\na,1 0.9 2 0.5\n"


@pytest.mark.parametrize("command", ["predict", "export"])
def test_a_full_disk_in_predict_or_export_is_one_line_and_exit_code_1(command, trained_run, tiny_data, tmp_path,
                                                                        monkeypatch, capsys, fast_export):
    out = tmp_path / ("predictions.csv" if command == "predict" else "model.pt2")
    full_disk(monkeypatch, str(out), 50)
    options = ["--data", validate_glob(tiny_data), "--workers", "0"] if command == "predict" else []
    assert main([command, str(trained_run), *options, "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"videopool {command}: error: disk full while writing {out}\n"
    assert not out.exists() and temporaries(str(tmp_path)) == []


# --- the primitives -------------------------------------------------------------------------------------------------


def test_a_failure_at_fsync_or_rename_leaves_the_previous_file(tmp_path, monkeypatch):
    out = tmp_path / "f.bin"
    out.write_bytes(b"old")
    for failing in ("fsync", "replace"):
        original = getattr(os, failing)

        def fail(*args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, failing, fail)
        with pytest.raises(DiskFullError, match=f"disk full while writing {out}$"):
            with atomic_write(str(out)) as f:
                f.write(b"new content")
        monkeypatch.setattr(os, failing, original)
        assert out.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"], failing
    with pytest.raises(KeyError):  # any other error: the same, and the error itself
        with atomic_path(str(out)) as tmp:
            open(tmp, "wb").write(b"half")
            raise KeyError("x")
    assert out.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_a_full_disk_masked_by_a_library_is_still_a_full_disk(tmp_path, monkeypatch):
    # what torch's writers do: their cleanup raises a RuntimeError whose context is the write's OSError
    out = tmp_path / "state.pt"
    full_disk(monkeypatch, str(out), 10)
    with pytest.raises(DiskFullError, match=f"disk full while writing {out}$"):
        with atomic_write(str(out)) as f:
            try:
                f.write(b"x" * 100)
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos 297 vs 244")
    assert os.listdir(tmp_path) == []


def test_torch_writers_hitting_a_full_disk_leave_no_writer_that_aborts_later(tmp_path, monkeypatch):
    # torch.export.save's C++ zip writer, left unfinished by a failed write, throws from its destructor during a
    # later garbage collection and aborts the process; deferred_write_errors lets it finish. In a child process,
    # since the failure is an abort.
    import gc
    import torch

    from tests.faults import run_in_child

    class Double(torch.nn.Module):
        def forward(self, x):
            return 2 * x

    program = torch.export.export(Double(), (torch.zeros(2, 3),))
    out = tmp_path / "model.pt2"

    def save_on_a_full_disk():
        full_disk(monkeypatch, str(out), 300)
        try:
            with atomic_write(str(out)) as handle, deferred_write_errors(handle) as writable:
                torch.export.save(program, writable)
        except DiskFullError:
            pass
        gc.collect()

    assert run_in_child(save_on_a_full_disk, str(tmp_path / "error.txt")) == "ok"
    assert os.listdir(tmp_path) == []


def test_leftover_temporaries_of_dead_processes_go_at_the_next_write(tmp_path):
    out = tmp_path / "predictions.csv"
    dead = tmp_path / f".predictions.csv.{2**22 + 7}.abcd_123.tmp"  # a pid above Linux's maximum
    alive = tmp_path / f".predictions.csv.{os.getppid()}.efgh4567.tmp"  # a live process may still be writing it
    other = tmp_path / f".other.csv.{2**22 + 7}.abcd_123.tmp"  # another file's: left to that file's next write
    for path in (dead, alive, other):
        path.write_bytes(b"half")
    with atomic_write(str(out)) as f:
        f.write(b"rows")
    assert sorted(os.listdir(tmp_path)) == sorted([out.name, alive.name, other.name])
    assert remove_temporaries(str(tmp_path)) == [str(other)]
    assert remove_temporaries(str(tmp_path), all_processes=True) == [str(alive)]
