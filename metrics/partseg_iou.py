"""Part-segmentation metrics on ShapeNetPart: per-shape IoU, instance / class mIoU, accuracy.

Definitions (those of the original DGCNN / CrossPoint ``calculate_shape_IoU``):

- per-shape IoU: the mean, over the parts of the shape's category, of |pred ∩ gt| / |pred ∪ gt|
  (point sets with that part id); a part absent from both the prediction and the ground truth
  counts as IoU 1.
- instance mIoU: the mean of the per-shape IoUs over all shapes.
- class mIoU: the mean, over the categories present in the evaluated set, of the mean per-shape
  IoU of the shapes of that category.

All functions work on *global* part ids (0..49). The default ShapeNetPart part table comes from
``datasets.tables`` (its one definition); every function takes the table as optional arguments.
"""

from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

# The 16 ShapeNetPart categories in the official order, their part counts and the first global
# part id of each category (global part ids are contiguous in category order), from datasets/tables.py.
from datasets.tables import SHAPENET_PART_CATEGORIES as CATEGORIES
from datasets.tables import SHAPENET_PART_NUM_PARTS as NUM_PARTS
from datasets.tables import SHAPENET_PART_OFFSETS as PART_OFFSETS
from datasets.tables import SHAPENET_PART_PARTS_PER_CATEGORY as PARTS_PER_CATEGORY

__all__ = ["CATEGORIES", "NUM_PARTS", "PART_OFFSETS", "PARTS_PER_CATEGORY", "shape_ious", "restrict_logits",
           "point_accuracy", "mean_part_accuracy", "per_category_miou", "segmentation_metrics", "format_category_table"]

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]


def _as_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _part_table(
    parts_per_category: Optional[Sequence[int]], part_offsets: Optional[Sequence[int]]
) -> Tuple[np.ndarray, np.ndarray]:
    counts = np.asarray(PARTS_PER_CATEGORY if parts_per_category is None else parts_per_category,
                        dtype=np.int64)
    if part_offsets is None:
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    else:
        offsets = np.asarray(part_offsets, dtype=np.int64)
    if counts.shape != offsets.shape:
        raise ValueError(f"parts_per_category has {counts.shape[0]} entries but part_offsets has "
                         f"{offsets.shape[0]}; pass one entry per category in both.")
    return counts, offsets


def _check_category(category: np.ndarray, num_shapes: int, num_categories: int) -> np.ndarray:
    category = category.reshape(-1).astype(np.int64)  # (S,)
    if category.shape[0] != num_shapes:
        raise ValueError(f"category has {category.shape[0]} entries for {num_shapes} shapes; "
                         "pass one category id per shape.")
    if category.size and (category.min() < 0 or category.max() >= num_categories):
        raise ValueError(f"category ids must lie in [0, {num_categories}), got "
                         f"[{category.min()}, {category.max()}].")
    return category


def shape_ious(
    pred: ArrayLike,
    target: ArrayLike,
    category: ArrayLike,
    parts_per_category: Optional[Sequence[int]] = None,
    part_offsets: Optional[Sequence[int]] = None,
) -> np.ndarray:
    """Per-shape part IoU, averaged over the parts of each shape's category.

    Args:
        pred: (S, N) integer predicted global part ids. Ids outside the shape's category are
            allowed; they simply match none of its parts (they lower the IoU of the true part).
        target: (S, N) integer ground-truth global part ids.
        category: (S,) (or (S, 1)) integer category ids.
        parts_per_category, part_offsets: the part table (default: ShapeNetPart's).
    Returns:
        (S,) float64 per-shape IoU; a part absent from both pred and target counts as 1.
    """
    pred_np, target_np = _as_numpy(pred), _as_numpy(target)
    if pred_np.ndim != 2 or pred_np.shape != target_np.shape:
        raise ValueError(f"pred and target must both be (S, N) part-id arrays, got "
                         f"{pred_np.shape} and {target_np.shape}.")
    counts, offsets = _part_table(parts_per_category, part_offsets)
    cat = _check_category(_as_numpy(category), pred_np.shape[0], counts.shape[0])
    ious = np.zeros(pred_np.shape[0], dtype=np.float64)
    for c in np.unique(cat):
        rows = cat == c  # (S,) mask of the shapes of category c
        p, t = pred_np[rows], target_np[rows]  # (S_c, N)
        part_ious = []
        for part in range(offsets[c], offsets[c] + counts[c]):
            inter = np.logical_and(p == part, t == part).sum(axis=1)  # (S_c,)
            union = np.logical_or(p == part, t == part).sum(axis=1)  # (S_c,)
            part_ious.append(np.where(union == 0, 1.0, inter / np.maximum(union, 1)))
        ious[rows] = np.mean(np.stack(part_ious, axis=0), axis=0)  # (S_c,)
    return ious


def restrict_logits(
    logits: torch.Tensor,
    category: torch.Tensor,
    part_dim: int = 1,
    parts_per_category: Optional[Sequence[int]] = None,
    part_offsets: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """Argmax over the parts of each shape's category only (the other logits are ignored).

    Args:
        logits: (S, P, N) with ``part_dim=1`` (the model's output layout) or (S, N, P) with
            ``part_dim=2`` (or -1); P is the number of global part ids (50 for ShapeNetPart).
        category: (S,) integer category ids.
        part_dim: the dimension of ``logits`` holding the parts.
        parts_per_category, part_offsets: the part table (default: ShapeNetPart's).
    Returns:
        (S, N) int64 global part ids, each within its shape's category, on logits' device.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be (S, P, N) or (S, N, P), got shape {tuple(logits.shape)}.")
    part_dim = part_dim % 3
    if part_dim not in (1, 2):
        raise ValueError(f"part_dim must be 1 or 2 (the batch is dim 0), got {part_dim}.")
    counts, offsets = _part_table(parts_per_category, part_offsets)
    num_parts = logits.shape[part_dim]
    if int(offsets[-1] + counts[-1]) > num_parts:
        raise ValueError(f"logits have {num_parts} parts along dim {part_dim}, but the part table "
                         f"needs {int(offsets[-1] + counts[-1])}; restrict only 50-way global logits.")
    category = category.reshape(-1).to(device=logits.device, dtype=torch.long)  # (S,)
    start = torch.as_tensor(offsets, device=logits.device)[category]  # (S,)
    stop = start + torch.as_tensor(counts, device=logits.device)[category]  # (S,)
    ids = torch.arange(num_parts, device=logits.device)  # (P,)
    allowed = (ids[None, :] >= start[:, None]) & (ids[None, :] < stop[:, None])  # (S, P)
    mask_shape = (-1, num_parts, 1) if part_dim == 1 else (-1, 1, num_parts)
    masked = logits.masked_fill(~allowed.view(mask_shape), float("-inf"))  # same shape as logits
    return masked.argmax(dim=part_dim)  # (S, N)


def point_accuracy(pred: ArrayLike, target: ArrayLike) -> float:
    """Fraction of points whose predicted part id equals the ground truth (pred, target (S, N))."""
    pred_np, target_np = _as_numpy(pred), _as_numpy(target)
    if pred_np.shape != target_np.shape:
        raise ValueError(f"pred {pred_np.shape} and target {target_np.shape} must have the same shape.")
    return float(np.mean(pred_np == target_np))


def mean_part_accuracy(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean over the part ids present in target of the per-part recall (sklearn's balanced
    accuracy, the original's "avg acc"); pred, target (S, N)."""
    pred_np = _as_numpy(pred).reshape(-1)  # (S*N,)
    target_np = _as_numpy(target).reshape(-1)  # (S*N,)
    parts = np.unique(target_np)
    recalls = [np.mean(pred_np[target_np == p] == p) for p in parts]
    return float(np.mean(recalls))


def per_category_miou(
    ious: ArrayLike, category: ArrayLike, category_names: Sequence[str] = CATEGORIES
) -> Dict[str, Dict[str, float]]:
    """Mean shape IoU of every category present: {name: {"miou": float, "count": int}}.

    Args:
        ious: (S,) per-shape IoUs from :func:`shape_ious`.
        category: (S,) integer category ids.
        category_names: names indexed by category id.
    """
    ious_np = _as_numpy(ious).astype(np.float64).reshape(-1)  # (S,)
    cat = _check_category(_as_numpy(category), ious_np.shape[0], len(category_names))
    return {
        category_names[c]: {"miou": float(ious_np[cat == c].mean()), "count": int((cat == c).sum())}
        for c in np.unique(cat)
    }


def segmentation_metrics(
    pred: ArrayLike,
    target: ArrayLike,
    category: ArrayLike,
    category_names: Sequence[str] = CATEGORIES,
    parts_per_category: Optional[Sequence[int]] = None,
    part_offsets: Optional[Sequence[int]] = None,
) -> Dict[str, object]:
    """All reported numbers for one set of predictions.

    Args:
        pred, target: (S, N) global part ids; category: (S,) category ids.
    Returns:
        {"instance_miou", "class_miou" (mean over the categories present), "accuracy" (per
        point), "mean_part_accuracy", "per_category" ({name: {"miou", "count"}}), "num_shapes"}.
    """
    ious = shape_ious(pred, target, category, parts_per_category, part_offsets)
    table = per_category_miou(ious, category, category_names)
    return {
        "instance_miou": float(ious.mean()),
        "class_miou": float(np.mean([row["miou"] for row in table.values()])),
        "accuracy": point_accuracy(pred, target),
        "mean_part_accuracy": mean_part_accuracy(pred, target),
        "per_category": table,
        "num_shapes": int(ious.shape[0]),
    }


def format_category_table(per_category: Dict[str, Dict[str, float]]) -> str:
    """A plain-text table of per-category mIoU (as returned in ``segmentation_metrics``)."""
    lines = [f"{'category':<12} {'shapes':>6} {'mIoU':>7}"]
    for name, row in per_category.items():
        lines.append(f"{name:<12} {row['count']:>6d} {100 * row['miou']:>7.2f}")
    return "\n".join(lines)
