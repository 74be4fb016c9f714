import os

import pytest
import torch

# Two xdist workers share two cores: one thread each avoids oversubscription.
torch.set_num_threads(int(os.environ.get("VIDEOPOOL_TEST_THREADS", "1")))

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture
def fixtures_dir() -> str:
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The tiny labelled data set of :mod:`tests.tiny_run` (train/validate shards and two vocabularies)."""
    from tests.tiny_run import write_tiny_data

    root = tmp_path_factory.mktemp("tiny")
    write_tiny_data(root)
    return root


@pytest.fixture(scope="session")
def trained_run(tiny_data, tmp_path_factory):
    """A run directory trained once per session (per xdist worker) through the Python API: 8 steps with the full
    vocabulary, validated (and checkpointed) every 4 steps. Tests must not write into it."""
    from tests.tiny_run import train_tiny, validate_glob

    out = tmp_path_factory.mktemp("run") / "run"
    train_tiny(tiny_data, out, vocabulary=str(tiny_data / "vocabulary.csv"), max_steps=8,
               val_data=[validate_glob(tiny_data)], eval_every=4)
    return out
