"""Figure of part segmentations: ground truth vs prediction for a few shapes.

matplotlib is optional: it is imported inside the function (Agg backend, no display needed).
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from datasets.tables import SHAPENET_PART_CATEGORIES as CATEGORIES
from datasets.tables import SHAPENET_PART_OFFSETS as PART_OFFSETS


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
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    out = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
