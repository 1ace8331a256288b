"""evaluation/plots.py: the t-SNE and confusion-matrix figures."""

import numpy as np
import pytest

from conftest import gaussian_blobs
from evaluation.plots import plot_confusion, plot_part_segmentation, plot_tsne
from metrics.classification import confusion_matrix


def test_plots_write_pngs(tmp_path):
    f, y = gaussian_blobs(6, 3, 8, sep=5.0, seed=0)
    plot_tsne(f, y, ["a", "b", "c"], tmp_path / "t.png", title="toy")
    plot_confusion(y, (y + 1) % 3, None, tmp_path / "c.png")
    assert (tmp_path / "t.png").stat().st_size > 1000 and (tmp_path / "c.png").stat().st_size > 1000
    cm = confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]), 2)
    assert cm.tolist() == [[1, 1], [0, 1]]


def test_part_segmentation_figure_and_bad_shapes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    points = rng.normal(size=(3, 64, 3))  # (S, N, 3)
    target = np.stack([np.zeros(64, int), np.full(64, 4), np.full(64, 6)])  # parts of airplane, bag, cap
    category = np.array([0, 1, 2])
    path = plot_part_segmentation(points, target, target[::-1], category, tmp_path / "sub" / "p.png", title="toy")
    with Image.open(path) as img:
        assert img.size == (900, 600)  # one 3-inch column per shape, truth above prediction, 100 dpi
    with pytest.raises(ValueError, match=r"points \(S, N, 3\)"):
        plot_part_segmentation(points[..., :2], target, target, category, tmp_path / "q.png")
