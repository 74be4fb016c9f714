import numpy as np
import pytest

from videopool.metrics import StreamingEvaluator, plot_ap_vs_frequency, plot_precision_recall

pytest.importorskip("matplotlib")


def _png_size(path):
    from matplotlib.image import imread

    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    return imread(path).shape


def test_plots_are_written(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.random((50, 12)) < 0.15
    scores = rng.random((50, 12)) + labels * 0.5
    labels[:, 0] = False  # one class without positives is left out of the scatter
    evaluator = StreamingEvaluator(12, top_k=4)
    evaluator.update(scores, labels)
    result = evaluator.compute()

    pr = plot_precision_recall(evaluator, tmp_path / "pr.png", title="demo")
    scatter = plot_ap_vs_frequency(
        result["per_class_ap"], result["class_positive_counts"], tmp_path / "ap.png", class_names=[f"c{i}" for i in range(12)]
    )
    assert _png_size(pr)[0] > 300 and _png_size(scatter)[0] > 300

    arrays = plot_precision_recall(evaluator.ranked_list(), tmp_path / "pr_arrays.png")
    assert _png_size(arrays) == _png_size(pr)


def test_ap_vs_frequency_checks_shapes(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        plot_ap_vs_frequency(np.zeros(3), np.zeros(4), tmp_path / "x.png")
