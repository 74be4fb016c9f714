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


def test_ap_vs_frequency_labels_fit_inside_and_never_overlap():
    """Issue 15: names printed on top of each other near AP = 0, one ran past the right edge. Here many classes
    share AP 0 at the same count and the most frequent class (long name) sits at the right edge."""
    from videopool.metrics.plots import _ap_vs_frequency_figure

    counts = np.array([400, 380, 390] + [50] * 12 + [3] * 20)
    ap = np.concatenate([[0.95, 0.93, 0.94], np.zeros(12), np.linspace(0, 1, 20)])
    names = [f"a rather long class name number {i}" for i in range(counts.size)]
    figure = _ap_vs_frequency_figure(ap, counts, names, 5, None)
    renderer = figure.canvas.get_renderer()
    axes = figure.axes[0]
    inside = axes.get_window_extent(renderer)
    boxes = [text.get_window_extent(renderer) for text in axes.texts]
    legend = axes.get_legend().get_window_extent(renderer)
    assert 2 <= len(boxes) < 10  # some are named, the crowded ones are not all named
    for i, box in enumerate(boxes):
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
        assert not box.overlaps(legend)
        assert not any(box.overlaps(other) for other in boxes[i + 1 :])
    assert {t.get_text() for t in axes.texts} <= set(names)
