import csv
import os

from videopool.cli.main import main


def test_demo_runs_end_to_end_on_a_tiny_dataset(tmp_path, capsys):
    workdir = tmp_path / "demo"
    argv = ["demo", "--dir", str(workdir), "--train-videos", "48", "--validate-videos", "16",
            "--test-videos", "6", "--epochs", "1", "--num-frames", "8", "--examples", "2", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "avgpool_logistic" in out and "gated_netvlad_256_small" in out
    assert "GAP@20" in out and "examples (validation):" in out
    with open(workdir / "predictions.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][:2] == ["VideoId", "LabelConfidencePairs"]
    assert len(rows) == 1 + 6
    pairs = rows[1][1].split()
    assert len(pairs) == 2 * 20
    assert os.path.getsize(workdir / "plots" / "precision_recall.png") > 1000
    # a second run reuses the data instead of regenerating it
    assert main(argv) == 0
    assert "reusing the demo data" in capsys.readouterr().out
