"""docs/reliability.md, section 3: a user's mistake gets a message, never a traceback.

Every row of :data:`BAD_INPUTS` is a command line with one mistake (a flag, a ``--set`` key, a configuration
value, a device, a file) and a fragment of the message: running it must exit with status 2 and print exactly
one line, ``videopool <command>: error: <message>`` with the fragment (the bad value) in it, and nothing else
(no traceback, no usage block, nothing on stdout). The rows run in-process through ``videopool.cli.main.main``
on the shared tiny data set (tests/conftest.py), each in milliseconds; a few checks run ``python -m videopool``
in a subprocess for what only a real process shows: a closed stdout (``| head``) and the stderr of a user error
and of a bug. A bug (an exception that is not a user's mistake) must keep its traceback.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys

import pytest
import torch

from tests.tiny_run import MODEL_FLAGS
from videopool.cli.main import COMMANDS, main

FAST = ["--max-steps", "1", "--workers", "0", "--no-progress"]
TRAIN = ["train", *MODEL_FLAGS, "--train-data", "{train}", "--num-classes", "6", "--out", "{tmp}/run", *FAST]
EVALUATE = ["evaluate", "{run}", "--data", "{validate}", "--workers", "0"]
PREDICT = ["predict", "{run}", "--data", "{validate}", "--out", "{tmp}/p.csv", "--workers", "0"]
INSPECT = ["inspect", "{train}"]
MAKE = ["make-demo-data", "{tmp}/demo", "--quiet"]
CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="--device cuda is valid where CUDA is")

# (command line, a fragment of the one-line message). {train}/{validate}: the tiny data's globs, {data}: its
# folder, {run}: a trained run, {files}: the bad files of ``bad_files``, {tmp}: a fresh folder per row.
BAD_INPUTS = [
    # demo: its flags are checked when parsed, before any data is made
    (["demo", "--epochs", "0"], "--epochs: must be a positive integer, got '0'"),
    (["demo", "--num-frames", "-3"], "--num-frames: must be a positive integer, got '-3'"),
    (["demo", "--train-videos", "0"], "--train-videos: must be a positive integer, got '0'"),
    (["demo", "--examples", "-1"], "--examples: must be an integer >= 0, got '-1'"),
    (["demo", "--seed", "abc"], "--seed: invalid int value: 'abc'"),
    (["demo", "--dir", "{files}/plain.txt"], "plain.txt' is an existing file, not a directory"),
    # make-demo-data
    ([*MAKE, "--classes", "5"], "needs 12 to 100,000 classes, got 5"),
    ([*MAKE, "--classes", "99999999999"], "got 99999999999"),  # was a MemoryError (745 GiB)
    ([*MAKE, "--videos-per-shard", "0"], "--videos-per-shard: must be a positive integer, got '0'"),
    ([*MAKE, "--train-videos", "-1"], "--train-videos: must be an integer >= 0, got '-1'"),
    ([*MAKE, "--seed", "-1"], "--seed: must be an integer >= 0, got '-1'"),
    (["make-demo-data", "{files}/plain.txt"], "plain.txt' is an existing file, not a directory"),
    (["make-demo-data", "{files}/demo", "--quiet"], "already holds demo files (manifest.json, ...)"),
    # inspect
    (["inspect", "{tmp}/nothing-*.tfrecord"], "nothing-*.tfrecord"),
    (["inspect", "{files}/empty_dir"], "contains no *.tfrecord files"),
    ([*INSPECT, "--vocabulary", "{files}/missing.csv"], "missing.csv' does not exist"),
    ([*INSPECT, "--vocabulary", "{files}/binary.csv"], "binary.csv: the vocabulary is a binary file"),
    ([*INSPECT, "--vocabulary", "{files}/utf16.csv"], "utf16.csv: the vocabulary is UTF-16 text"),
    ([*INSPECT, "--vocabulary", "{files}/latin1.csv"], "is not UTF-8 text (byte 0xe9"),
    ([*INSPECT, "--vocabulary", "{files}/absurd.csv"], "line 3: class index 999999999999 would make a model"),
    ([*INSPECT, "--vocabulary", "{data}"], "is a directory; give its vocabulary.csv"),
    ([*INSPECT, "--num-classes", "0"], "--num-classes: must be a positive integer, got '0'"),
    ([*INSPECT, "--top", "-1"], "--top: must be an integer >= 0, got '-1'"),
    ([*INSPECT, "--on-error", "ignore"], "--on-error: invalid choice: 'ignore'"),
    ([*INSPECT, "--bogus"], "unrecognized arguments: --bogus"),
    # train: --set values and keys, checked by the strict parser before any data is read
    ([*TRAIN, "--set", "learning_rate=abc"], "learning_rate must be a number, got 'abc'"),
    ([*TRAIN, "--set", "learning_rate"], "--set expects key=value, got 'learning_rate'"),
    ([*TRAIN, "--set", "=3"], "--set expects key=value, got '=3'"),
    ([*TRAIN, "--set", "pooling.cluster_size=[1,2"], "--set 'pooling.cluster_size=[1,2': the value is not"),
    ([*TRAIN, "--set", "clip_mod=global"], "'clip_mod'; did you mean 'clip_mode'?"),
    ([*TRAIN, "--set", "adam_betas=[0.9, 1.5]"], "adam_betas[1] must be in [0, 1), got 1.5"),
    ([*TRAIN, "--set", "eval_every=-1"], "eval_every must be >= 0 (0 = at the end of each epoch), got -1"),
    ([*TRAIN, "--set", "lr_decay=0"], "lr_decay must be in (0, 1] (1 = no decay), got 0.0"),
    # train: model configuration values (were ZeroDivisionError, negative-dimension RuntimeError, KeyError...)
    ([*TRAIN, "--set", "pooling.cluster_size=0"], "pooling.cluster_size must be a positive integer or null, got 0"),
    ([*TRAIN, "--set", "hidden.size=0"], "hidden.size must be a positive integer or null, got 0"),
    ([*TRAIN, "--set", "hidden.size=abc"], "hidden.size must be an integer, got 'abc'"),
    ([*TRAIN, "--set", "modalities.audio=-3"], "modalities.audio must be a positive integer, got -3"),
    ([*TRAIN, "--set", "pooling.type=vlad"], "pooling.type = 'vlad' is not one of"),
    ([*TRAIN, "--set", "pooling.per_modality.audio.type=foo"], "pooling.per_modality.audio.type = 'foo'"),
    ([*TRAIN, "--set", "pooling.options.groups=8"], "rejected its settings"),
    ([*TRAIN, "--set", "fusion.dropout=1.5"], "fusion.dropout must be in [0, 1), got 1.5"),
    ([*TRAIN, "--set", "classifier.num_mixtures=0"], "classifier.num_mixtures must be a positive integer, got 0"),
    ([*TRAIN, "--set", "gating.type=foo"], "gating.type = 'foo' is not one of"),
    ([*TRAIN, "--set", "mixture.branches=2"], "mixture.branches 2 mixes the branches' logits"),
    ([*TRAIN, "--set", "fusion.type=mfb", "--set", "modalities={{rgb: 1024}}", "--set",
      "pooling.cluster_size_divisor={{}}"], "fusion.type 'mfb' needs two modalities, got ['rgb']"),
    ([*TRAIN, "--set", "fusion.stage=early", "--set", "fusion.type=mfb"], "fusion.type must be 'concat', not 'mfb'"),
    (["train", "--model", "avgpool_logistic", "--set", "hidden.init=willow", "--train-data", "{train}",
      "--num-classes", "6", "--out", "{tmp}/run", *FAST], "hidden.init 'willow' draws N(0, 1/K)"),
    # train: flags
    ([*TRAIN, "--lr", "nan"], "learning_rate must be a positive number, got nan"),  # was exit 1 at step 1
    ([*TRAIN, "--lr", "-0.1"], "learning_rate must be a positive number, got -0.1"),
    ([*TRAIN, "--batch-size", "0"], "batch_size must be positive, got 0"),
    ([*TRAIN, "--workers", "-1"], "workers must be >= 0, got -1"),
    ([*TRAIN, "--max-steps", "many"], "--max-steps: invalid int value: 'many'"),
    ([*TRAIN, "--epochs", "0"], "epochs must be at least 1, got 0"),
    ([*TRAIN, "--num-classes", "0"], "num_classes must be >= 1, got 0"),
    ([*TRAIN, "--num-classes", "100000000000"], "num_classes 100,000,000,000 is more than 1,000,000"),
    ([*TRAIN, "--precision", "fp16"], "--precision: invalid choice: 'fp16'"),
    pytest.param([*TRAIN, "--device", "cuda"], "--device 'cuda': this torch build has no CUDA", marks=CPU_ONLY),
    ([*TRAIN, "--device", "cuda:99"], "--device 'cuda:99'"),
    ([*TRAIN, "--device", "tpu"], "--device 'tpu' is not a device"),
    ([*TRAIN, "--set", "device=cpu:x"], "--device 'cpu:x' is not a device"),
    # train: files
    ([*TRAIN, "--out", "{files}/plain.txt"], "--out '{files}/plain.txt' is an existing file"),
    ([*TRAIN, "--out", "{files}/plain.txt/run"], "which is a file"),
    ([*TRAIN, "--vocabulary", "{files}/binary.csv"], "the vocabulary is a binary file"),
    ([*TRAIN, "--vocabulary", "{files}/utf16.csv"], "the vocabulary is UTF-16 text"),
    ([*TRAIN, "--vocabulary", "{files}/absurd.csv"], "class index 999999999999"),  # V would be 10^12
    ([*TRAIN, "--vocabulary", "{data}/small_vocabulary.csv"], "--num-classes 6 disagrees with"),
    ([*TRAIN, "--config", "{files}/bad.yaml"], "bad.yaml' is not valid YAML"),
    ([*TRAIN, "--config", "{data}"], "is a directory; give a YAML file"),
    ([*TRAIN, "--config", "{files}/missing.yaml"], "missing.yaml' does not exist"),
    ([*TRAIN, "--config", "{files}/misspelt.yaml"], "'learnin_rate'; did you mean 'learning_rate'?"),
    ([*TRAIN, "--model", "nosuchmodel"], "unknown model 'nosuchmodel'"),
    (["train", "--train-data", "{train}", "--num-classes", "6", "--out", "{tmp}/run"], "no model given"),
    (["train", *MODEL_FLAGS, "--train-data", "{train}", "--out", "{tmp}/run"], "give --num-classes V or"),
    (["train", *MODEL_FLAGS, "--num-classes", "6", "--out", "{tmp}/run", *FAST], "no --train-data given"),
    ([*TRAIN, "--train-data", "{tmp}/nothing-*"], "pattern '{tmp}/nothing-*' matches no file"),
    ([*TRAIN, "--train-data", "{files}/garbage.tfrecord"], "garbage.tfrecord, record 0, byte offset 0"),
    (["train", "--out", "{tmp}/none", "--resume"], "cannot resume: '{tmp}/none/config.yaml' does not exist"),
    ([*TRAIN, "--out", "{run}"], "already holds a training run; pass --resume"),
    (["train", "--out", "{resumable}", "--resume", "--no-progress", "--set", "pooling.cluster_size=4"],
     "was saved from a different model configuration: "),  # a message of several lines, printed on one
    # evaluate
    (["evaluate", "{tmp}/missing-run", "--data", "{validate}"], "missing-run' does not exist"),
    (["evaluate", "{files}/plain.txt", "--data", "{validate}"], "is not a readable safetensors file"),
    (["evaluate", "{run}", "--data", "{tmp}/none-*"], "--data pattern '{tmp}/none-*' matches no file"),
    (["evaluate", "{run}", "--data", "{files}/garbage.tfrecord"], "garbage.tfrecord, record 0"),
    ([*EVALUATE, "--batch-size", "0"], "--batch-size: must be a positive integer, got '0'"),  # was torch's
    ([*EVALUATE, "--top-k", "0"], "--top-k: must be a positive integer, got '0'"),
    ([*EVALUATE, "--num-frames", "0"], "--num-frames: must be a positive integer, got '0'"),
    ([*EVALUATE, "--workers", "-1"], "--workers: must be an integer >= 0, got '-1'"),
    ([*EVALUATE, "--sampling", "every"], "--sampling: invalid choice: 'every'"),
    ([*EVALUATE, "--device", "gpu"], "--device 'gpu' is not a device"),
    ([*EVALUATE, "--plots", "{files}/plain.txt"], "--plots: '{files}/plain.txt' is an existing file"),
    # predict
    (["predict", "{run}", "--data", "{validate}"], "the following arguments are required: --out"),
    (["predict", "{tmp}/missing", "--data", "{validate}", "--out", "{tmp}/p.csv"], "missing' does not exist"),
    ([*PREDICT, "--out", "{data}"], "--out: '{data}' is a directory; give a file name"),
    ([*PREDICT, "--out", "{files}/plain.txt/p.csv"], "'{files}/plain.txt' is a file, not a directory"),
    ([*PREDICT, "--top-k", "-1"], "--top-k: must be a positive integer, got '-1'"),
    ([*PREDICT, "--with-names"], "--with-names needs --vocabulary"),
    ([*PREDICT, "--vocabulary", "{files}/binary.csv"], "the vocabulary is a binary file"),
    ([*PREDICT, "--vocabulary", "{data}/small_vocabulary.csv"], "covers class ids 0..1 but the model predicts 6"),
    # export
    (["export", "{tmp}/missing", "--out", "{tmp}/m.pt2"], "missing' does not exist"),
    (["export", "{files}/plain.txt", "--out", "{tmp}/m.pt2"], "is not a readable safetensors file"),
    (["export", "{run}", "--out", "{data}"], "--out: '{data}' is a directory; give a file name"),
    (["export", "{run}", "--out", "{files}/plain.txt/m.pt2"], "'{files}/plain.txt' is a file, not a directory"),
    (["export", "{run}", "--out", "{tmp}/m.pt2", "--precision", "int8"], "--precision: invalid choice: 'int8'"),
    (["export", "{run}", "--out", "{tmp}/m.pt2", "--storage", "int8"], "--storage int8 writes a checkpoint, not a pt2"),
    (["export", "{run}", "--out", "{tmp}/m.safetensors", "--storage", "int4"], "--storage: invalid choice: 'int4'"),
    (["export", "{run}", "--out", "{tmp}/m.safetensors", "--max-model-bytes", "1e3"], "over --max-model-bytes 1,000"),
    (["export", "{run}", "--out", "{tmp}/m.safetensors", "--max-model-bytes", "lots"], "--max-model-bytes: must be a "),
    (["export", "{run}", "--out", "{tmp}/m.onnx", "--opset", "16"], "--opset 16 is too old"),
    (["export", "{run}", "--out", "{tmp}/m.onnx", "--precision", "bf16"], "--precision bf16 is for --format pt2"),
    (["export", "{run}", "--out", "{run}/best.safetensors", "--storage", "bf16"], "is the checkpoint being exported"),
    # models
    (["models", "--show", "nosuch"], "unknown model 'nosuch'"),
    (["models", "--num-classes", "0"], "--num-classes: must be a positive integer, got '0'"),  # was ConfigError
    (["models", "--num-classes", "many"], "--num-classes: invalid int value: 'many'"),
    (["models", "--num-classes", "99999999999"], "num_classes 99,999,999,999 is more than 1,000,000"),
    # localize, check-submission
    (["localize", "{run}", "--data", "{validate}", "--out", "{data}"], "--out: '{data}' is a directory"),
    (["localize", "{run}", "--data", "{validate}", "--out", "{tmp}/s.csv", "--classes", "{files}/missing.csv"],
     "missing.csv' does not exist"),
    (["localize", "{run}", "--data", "{validate}", "--out", "{tmp}/s.csv", "--plot", "v001"], "go together"),
    (["check-submission", "{tmp}/missing.csv"], "missing.csv' does not exist"),
    (["check-submission", "{data}", "--top-n", "0"], "--top-n: must be a positive integer, got '0'"),
    # average-checkpoints; evaluate --test-time-samples
    (["average-checkpoints", "{run}", "--last", "9", "--out", "{tmp}/a.safetensors"], "keeps only 3 step checkpoint(s)"),
    (["average-checkpoints", "--checkpoints", "{files}/missing.safetensors", "{files}/missing.safetensors", "--out",
      "{tmp}/a.safetensors"], "missing.safetensors' does not exist"),
    (["average-checkpoints", "{run}", "--out", "{run}"], "holds a training run"),
    (["average-checkpoints", "{run}", "--last", "0", "--out", "{tmp}/a"], "--last: must be a positive integer, got '0'"),
    (["evaluate", "{run}", "--data", "{validate}", "--test-time-samples", "3"], "add --sampling random"),
    (["evaluate", "{run}", "--data", "{validate}", "--test-time-samples", "0"],
     "--test-time-samples: must be a positive integer, got '0'"),
    # ensemble select / build
    (["ensemble", "select", "{run}", "--data", "{files}/none-*.tfrecord", "--out", "{tmp}/s", "--no-progress"],
     "none-*.tfrecord' matches no file"),
    (["ensemble", "build", "{files}/missing.json", "--out", "{tmp}/e"], "missing.json"),
    (["ensemble", "build", "{run}", "{files}/missing.json", "--out", "{tmp}/e"], "one selection file or runs"),
    (["ensemble", "build", "{data}", "--out", "{tmp}/e"], "holds no best.safetensors or last.safetensors"),
    # import-tf
    (["import-tf", "{tmp}/missing.ckpt", "--model", "gated_netvlad_256", "--out", "{tmp}/r"],
     "missing.ckpt.index' does not exist"),
    (["import-tf", "{tmp}/m.ckpt", "--model", "gated_netvlad_256", "--out", "{run}"], "already holds a run"),
    (["import-tf", "{tmp}/m.ckpt", "--model", "nosuch", "--out", "{tmp}/r"], "unknown model 'nosuch'"),
    (["import-tf", "{tmp}/m.ckpt", "--model", "gated_netvlad_256", "--out", "{tmp}/r", "--set", "beforenorm=1"],
     "did you mean 'beforeNorm'?"),
    (["import-tf", "{tmp}/m.ckpt", "--model", "gated_netvlad_256", "--out", "{tmp}/r", "--set", "gating=maybe"],
     "the reference flag gating is true or false"),
    (["import-tf", "{tmp}/m.ckpt", "--out", "{tmp}/r"], "the following arguments are required: --model"),
    # train-segments / evaluate-segments
    (["train-segments", "--data", "{train}", "--out", "{tmp}/s"], "no --from given"),
    (["train-segments", "--from", "{run}", "--data", "{train}", "--out", "{tmp}/s", "--set", "fc_sise=3"],
     "did you mean 'fc_size'?"),
    (["train-segments", "--from", "{run}", "--out", "{tmp}/s", "--model", "nosuch"], "invalid choice: 'nosuch'"),
    (["train-segments", "--from", "{tmp}/missing", "--data", "{train}", "--out", "{tmp}/s"], "missing' does not exist"),
    (["train-segments", "--from", "{run}", "--data", "{train}", "--out", "{tmp}/s", "--context", "-1"],
     "--context: must be an integer >= 0, got '-1'"),
    (["train-segments", "--from", "{run}", "--out", "{tmp}/s"], "no --data given"),
    (["train-segments", "--out", "{tmp}/s", "--resume"], "cannot resume"),
    (["evaluate-segments", "{run}", "--data", "{validate}"], "holds a video-level model"),
    (["evaluate-segments", "{run}", "--data", "{validate}", "--top-n", "0"], "--top-n: must be a positive integer"),
    # no sub-command of that name
    (["trian"], "invalid choice: 'trian'"),
]


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory, trained_run):
    """The files the table gives where a vocabulary, a config, a checkpoint, a shard or a directory belongs."""
    root = tmp_path_factory.mktemp("bad_files")
    (root / "plain.txt").write_text("not a checkpoint\n")
    (root / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (root / "utf16.csv").write_bytes("Index,Name\n0,a\n".encode("utf-16"))  # with its byte-order mark
    (root / "latin1.csv").write_bytes("Index,Name\n0,Café\n".encode("latin-1"))
    (root / "absurd.csv").write_text("Index,Name\n0,a\n999999999999,b\n")  # a model of 10^12 classes
    (root / "bad.yaml").write_text("learning_rate: [1, 2\n")
    (root / "misspelt.yaml").write_text("learnin_rate: 0.1\n")
    (root / "garbage.tfrecord").write_bytes(b"garbage" * 10)
    (root / "empty_dir").mkdir()
    (root / "demo").mkdir()
    (root / "demo" / "manifest.json").write_text("{}")
    shutil.copytree(trained_run, root / "resumable")  # resumed with another model: must not touch trained_run
    return root


def run_cli(argv):
    """The exit status of ``main(argv)``; argparse's ``SystemExit`` counts as one."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


def placeholders(tiny_data, trained_run, bad_files, tmp_path) -> dict[str, str]:
    return {"train": str(tiny_data / "train-*.tfrecord"), "validate": str(tiny_data / "validate-*.tfrecord"),
            "data": str(tiny_data), "run": str(trained_run), "files": str(bad_files), "tmp": str(tmp_path),
            "resumable": str(bad_files / "resumable")}


@pytest.mark.parametrize("argv, fragment", BAD_INPUTS)
def test_a_mistake_exits_2_with_one_line_naming_it(argv, fragment, tiny_data, trained_run, bad_files, tmp_path,
                                                  capsys):
    where = placeholders(tiny_data, trained_run, bad_files, tmp_path)
    argv, fragment = [arg.format(**where) for arg in argv], fragment.format(**where)
    capsys.readouterr()  # whatever the fixtures printed
    code = run_cli(argv)
    captured = capsys.readouterr()
    command = f"videopool {argv[0]}" if argv[0] in {c.replace("_", "-") for c in COMMANDS} else "videopool"
    lines = captured.err.splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith(f"{command}: error: "), captured.err
    assert fragment in lines[0]
    assert captured.out == "" and "Traceback" not in captured.err


def test_the_table_covers_every_sub_command_with_at_least_50_inputs():
    commands = collections.Counter((row.values if hasattr(row, "values") else row)[0][0] for row in BAD_INPUTS)
    assert sum(commands.values()) >= 50
    assert {c.replace("_", "-") for c in COMMANDS} <= set(commands)


def test_a_utf8_byte_order_mark_is_skipped(tmp_path, capsys):
    """What spreadsheet programs write is read, not refused: the mark is not part of the first column's name."""
    from videopool.data import read_vocabulary

    path = tmp_path / "vocabulary.csv"
    path.write_bytes("\ufeffIndex,Name\n0,a\n1,b\n".encode("utf-8"))
    assert read_vocabulary(path).names == {0: "a", 1: "b"}


# --- bugs keep their traceback ---------------------------------------------------------------------------------

def _torch_value_error(*args, **kwargs):
    torch.nn.functional.dropout(torch.zeros(1), p=2.0)  # ValueError raised inside torch: an input we did not check


@pytest.mark.parametrize("bug", [
    RuntimeError("a bug"), KeyError("a bug"), TypeError("a bug"), AssertionError("a bug"), _torch_value_error,
], ids=["RuntimeError", "KeyError", "TypeError", "AssertionError", "ValueError-from-torch"])
def test_a_bug_propagates_with_its_traceback(bug, monkeypatch, capsys):
    import videopool.cli.models as models_command

    def broken(name, num_classes=None):
        if callable(bug):
            bug()
        raise bug

    monkeypatch.setattr(models_command, "describe", broken)
    expected = ValueError if callable(bug) else type(bug)
    with pytest.raises(expected):
        main(["models", "--pattern", "avgpool_logistic"])
    assert "error:" not in capsys.readouterr().err


def test_one_line_joins_a_message_of_several_lines():
    from videopool.cli.main import one_line

    assert one_line(ValueError("checkpoint differs:\n  pooling: a\n  hidden: b\n")) == \
        "checkpoint differs: pooling: a; hidden: b"
    assert one_line(KeyError("no 'x' here")) == "no 'x' here"  # without the quotes KeyError's str() adds


# --- in a real process ------------------------------------------------------------------------------------------

def _videopool(*argv, stdout=subprocess.PIPE, code=None):
    command = [sys.executable, "-c", code, *argv] if code else [sys.executable, "-m", "videopool", *argv]
    return subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120)


def test_a_mistake_prints_one_line_and_no_traceback_on_stderr(tiny_data, tmp_path):
    result = _videopool("train", *MODEL_FLAGS, "--train-data", str(tiny_data / "train-*.tfrecord"), "--num-classes",
                        "6", "--out", str(tmp_path / "run"), "--set", "learning_rate=abc", *FAST)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "videopool train: error: command line: learning_rate must be a number, got 'abc'\n"


def test_a_closed_pipe_ends_quietly(tiny_data):
    """``videopool inspect ... | head``: the reader has gone; no BrokenPipeError traceback, no message."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = _videopool("inspect", str(tiny_data / "train-*.tfrecord"), "--json", stdout=write)
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (141, "")


def test_a_bug_shows_its_traceback_in_a_real_process():
    code = ("import sys, videopool.cli.models as m\n"
            "def broken(args): raise RuntimeError('a bug, not a mistake')\n"
            "m.run = broken\n"
            "from videopool.cli.main import main\n"
            "sys.exit(main(['models']))\n")
    result = _videopool(code=code)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("RuntimeError: a bug, not a mistake")
