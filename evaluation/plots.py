"""Figures: t-SNE of frozen features, the linear-SVM confusion matrix, part segmentations (truth vs prediction).

matplotlib is optional: it is imported inside each function (Agg backend, no display needed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from datasets.tables import SHAPENET_PART_CATEGORIES as CATEGORIES
from datasets.tables import SHAPENET_PART_OFFSETS as PART_OFFSETS
from metrics.classification import confusion_matrix

__all__ = ["tsne_embedding", "plot_tsne", "write_tsne", "plot_confusion",
           "plot_part_segmentation", "plot_partseg_examples"]


def _pyplot() -> Any:
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tsne_embedding(feats: np.ndarray, seed: int = 0, perplexity: float = 30.0, pca_dims: int = 50) -> np.ndarray:
    """2-D t-SNE of features.

    Features wider than ``pca_dims`` are first reduced with PCA (the usual t-SNE preprocessing; it makes
    2048-d DGCNN features tractable on a CPU). The perplexity is lowered to (N - 1) / 3 for small N
    (scikit-learn requires perplexity < N).

    Args:
        feats: (N, D) features.
    Returns:
        (N, 2) float32 embedding.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    feats = np.asarray(feats, dtype=np.float32)
    n = len(feats)
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 samples, got {n}")
    if feats.shape[1] > pca_dims and n > pca_dims:
        feats = PCA(n_components=pca_dims, random_state=seed).fit_transform(feats)  # (N, D) -> (N, pca_dims)
    perp = float(min(perplexity, max(1.0, (n - 1) / 3.0)))
    tsne = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed)
    return tsne.fit_transform(feats).astype(np.float32)


def plot_tsne(
    feats: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str] | None,
    path: str | Path | None,
    title: str = "t-SNE of point-cloud features",
    seed: int = 0,
) -> Any:
    """Scatter the 2-D t-SNE of ``feats`` (N, D) coloured by ``labels`` (N,); save a PNG to ``path``.

    Returns the matplotlib Figure (closed after saving when ``path`` is given, so it is not shown twice).
    """
    plt = _pyplot()
    labels = np.asarray(labels).reshape(-1)  # (N,)
    emb = tsne_embedding(feats, seed=seed)
    classes = np.unique(labels)
    if len(classes) <= 10:
        colors = [plt.get_cmap("tab10")(i) for i in range(10)]
    else:  # 60 distinct colours (enough for ModelNet40), then markers change
        colors = [plt.get_cmap(m)(i) for m in ("tab20", "tab20b", "tab20c") for i in range(20)]
    markers = "o^sDv*"
    fig, ax = plt.subplots(figsize=(8 if len(classes) > 20 else 7, 6))
    for i, c in enumerate(classes):
        m = labels == c
        name = class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)
        marker = markers[(i // len(colors)) % len(markers)]
        ax.scatter(emb[m, 0], emb[m, 1], s=8, color=colors[i % len(colors)], marker=marker, label=name)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(classes) <= 40:
        ax.legend(fontsize=6, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
                  ncol=1 if len(classes) <= 20 else 2)
    fig.tight_layout()
    if path is not None:
        _save_png(plt, fig, path, dpi=120)
    return fig


def write_tsne(feats: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None, path: Path,
               title: str) -> str:
    """t-SNE PNG of ``feats`` (N, D) coloured by ``labels`` (N,); returns the path."""
    plot_tsne(feats, labels, class_names, path, title=title)
    print(f"t-SNE plot: {path}", flush=True)
    return str(path)


def plot_confusion(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str] | None,
    path: str | Path | None,
    title: str = "Linear SVM confusion matrix (row-normalized)",
) -> Any:
    """Row-normalized confusion matrix of ``y_true`` (N,) vs ``y_pred`` (N,); save a PNG to ``path``.

    Returns the matplotlib Figure (closed after saving when ``path`` is given).
    """
    plt = _pyplot()
    y_true = np.asarray(y_true).reshape(-1)  # (N,)
    y_pred = np.asarray(y_pred).reshape(-1)  # (N,)
    n = int(max(y_true.max(), y_pred.max()) + 1)
    if class_names is not None:
        n = max(n, len(class_names))
    cm = confusion_matrix(y_true, y_pred, n).astype(np.float64)
    cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1.0)
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    size = min(4 + 0.25 * n, 14)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(cm, vmin=0.0, vmax=1.0, cmap="Blues")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_yticklabels(names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    if path is not None:
        _save_png(plt, fig, path, dpi=120)
    return fig


def plot_part_segmentation(
    points: np.ndarray,
    target: np.ndarray,
    pred: np.ndarray,
    category: np.ndarray,
    path: str | os.PathLike,
    category_names: Sequence[str] = CATEGORIES,
    part_offsets: Sequence[int] = PART_OFFSETS,
    title: Optional[str] = None,
    point_size: float = 2.0,
) -> str:
    """Write a PNG: one column per shape, ground truth on top, prediction below.

    Points are drawn as a 3-D scatter (ShapeNetPart's up axis, y, drawn vertically) and coloured
    by their part index within the shape's category (global id minus the category's offset), so
    ground truth and prediction use the same colours; a predicted id outside the category is grey.

    Args:
        points: (S, N, 3) coordinates.
        target: (S, N) ground-truth global part ids.
        pred: (S, N) predicted global part ids.
        category: (S,) category ids.
        path: output PNG path (its directory is created).
        category_names, part_offsets: the part table (default: ShapeNetPart's).
        title: optional figure title.
        point_size: scatter marker size.
    Returns:
        The path written, as a string.
    """
    plt = _pyplot()
    points = np.asarray(points, dtype=np.float64)
    target, pred = np.asarray(target), np.asarray(pred)
    category = np.asarray(category).reshape(-1)  # (S,)
    if points.ndim != 3 or points.shape[2] != 3 or target.shape != points.shape[:2] \
            or pred.shape != points.shape[:2] or category.shape[0] != points.shape[0]:
        raise ValueError(f"plot_part_segmentation needs points (S, N, 3), target and pred (S, N), "
                         f"category (S,); got {points.shape}, {target.shape}, {pred.shape}, "
                         f"{category.shape}.")
    num_shapes = points.shape[0]
    palette = plt.get_cmap("tab10")
    grey = np.array([0.6, 0.6, 0.6, 1.0])

    def colours(ids: np.ndarray, cat: int) -> np.ndarray:
        next_offset = part_offsets[cat + 1] if cat + 1 < len(part_offsets) else np.inf
        local = ids - part_offsets[cat]  # (N,)
        inside = (ids >= part_offsets[cat]) & (ids < next_offset)  # (N,)
        rgba = palette(np.clip(local, 0, 9) % 10)  # (N, 4)
        rgba[~inside] = grey
        return rgba

    fig = plt.figure(figsize=(3.0 * num_shapes, 6.0))
    for s in range(num_shapes):
        cat = int(category[s])
        x, y, z = points[s, :, 0], points[s, :, 1], points[s, :, 2]
        lim = np.abs(points[s]).max() or 1.0
        for row, (ids, label) in enumerate(((target[s], "ground truth"), (pred[s], "prediction"))):
            ax = fig.add_subplot(2, num_shapes, row * num_shapes + s + 1, projection="3d")
            ax.scatter(x, z, y, c=colours(ids, cat), s=point_size, depthshade=False)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_zlim(-lim, lim)
            ax.view_init(elev=20, azim=-60)
            ax.set_box_aspect((1, 1, 1), zoom=1.4)
            ax.set_axis_off()
            name = category_names[cat] if cat < len(category_names) else str(cat)
            ax.set_title(f"{name}: {label}", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save_png(plt, fig, path, dpi=100)


def _save_png(plt: Any, fig: Any, path: str | Path, dpi: int) -> str:
    """Write ``fig`` to ``path`` (its folder created) and close it, so a notebook does not show it twice."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return os.fspath(path)


def plot_partseg_examples(dataset: Any, out: dict[str, Any], path: Path, num_shapes: int, title: str) -> str:
    """Ground truth vs (restricted) prediction for the first shape of up to ``num_shapes`` categories."""
    chosen, seen = [], set()
    for i, c in enumerate(out["category"].tolist()):
        if c not in seen:
            seen.add(c)
            chosen.append(i)
        if len(chosen) == num_shapes:
            break
    points = np.stack([dataset[i][0].numpy() for i in chosen])  # (S, N, 3)
    return plot_part_segmentation(points, out["target"][chosen], out["pred"][chosen], out["category"][chosen],
                                  path, title=title)
