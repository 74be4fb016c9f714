"""``videopool models``: listing, JSON output with meta-device parameter counts, --show."""

import json

import yaml

from videopool.cli.main import main
from videopool.models import get_model_config, load_config


def test_models_json_lists_parameter_counts(capsys):
    assert main(["models", "--pattern", "gated_netvlad_*", "--num-classes", "4716", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == ["gated_netvlad_256", "gated_netvlad_256_small"]
    assert rows[0]["parameters"] == 333_229_888 and rows[0]["num_classes"] == 4716
    assert rows[0]["pooling"] == "netvlad K=256" and rows[0]["reported"]["gap"] == 0.832


def test_models_table_hides_small_variants(capsys):
    assert main(["models", "--pattern", "*soft_dbow*", "--no-small"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["name", "pooling", "fusion", "head", "params"]
    assert [line.split()[0] for line in lines[1:]] == ["gated_soft_dbow_4096", "soft_dbow_4096", "soft_dbow_8000"]


def test_models_show_prints_a_loadable_yaml(capsys, tmp_path):
    assert main(["models", "--show", "mfb_avgpool_mfb"]) == 0
    text = capsys.readouterr().out
    data = yaml.safe_load(text)
    assert data["model"]["fusion"]["type"] == "mfb" and data["recipe"]["batch_size"] == 128
    path = tmp_path / "copy.yaml"
    path.write_text(text)
    assert load_config(path).model == get_model_config("mfb_avgpool_mfb")
    assert get_model_config("mfb_avgpool_mfb_small").fusion.output_size == 100
    assert main(["models", "--show", "mfb_avgpool_mf"]) == 2
    assert "did you mean 'mfb_avgpool_mfb'" in capsys.readouterr().err


def test_models_with_no_match_fails(capsys):
    assert main(["models", "--pattern", "nothing*"]) == 1
