"""Part-segmentation metrics (metrics/partseg_iou.py) against hand-computed cases."""

import numpy as np
import pytest
import torch

import metrics.partseg_iou as iou
from metrics.partseg_iou import (
    point_accuracy,
    restrict_logits,
    segmentation_metrics,
    shape_ious,
)

AIRPLANE, BAG = 0, 1  # airplane: parts 0..3, bag: parts 4..5


def original_calculate_shape_iou(pred_np, seg_np, label):
    """Literal transcription of calculate_shape_IoU in the original train_partseg.py
    (the class_choice=None branch)."""
    seg_num = [4, 2, 2, 4, 4, 3, 3, 2, 4, 2, 6, 2, 3, 3, 3, 3]
    index_start = [0, 4, 6, 8, 12, 16, 19, 22, 24, 28, 30, 36, 38, 41, 44, 47]
    label = label.squeeze()
    shape_ious_ = []
    for shape_idx in range(seg_np.shape[0]):
        start_index = index_start[label[shape_idx]]
        num = seg_num[label[shape_idx]]
        parts = range(start_index, start_index + num)
        part_ious = []
        for part in parts:
            inter = np.sum(np.logical_and(pred_np[shape_idx] == part, seg_np[shape_idx] == part))
            union = np.sum(np.logical_or(pred_np[shape_idx] == part, seg_np[shape_idx] == part))
            part_ious.append(1 if union == 0 else inter / float(union))
        shape_ious_.append(np.mean(part_ious))
    return shape_ious_


def test_partial_overlap_two_parts():
    # bag: part 4 I=1 U=2 -> 1/2, part 5 I=2 U=3 -> 2/3
    ious = shape_ious([[4, 4, 5, 5]], [[4, 5, 5, 5]], [BAG])
    assert ious == pytest.approx([(1 / 2 + 2 / 3) / 2])


def test_part_absent_from_both_counts_one():
    # airplane has 4 parts; parts 2 and 3 are in neither pred nor target.
    assert shape_ious([[0, 0, 1, 1]], [[0, 0, 1, 1]], [AIRPLANE]) == pytest.approx([1.0])
    # part 0: 2/3, part 1: 1/2, parts 2, 3: 1 each.
    assert shape_ious([[0, 0, 0, 1]], [[0, 0, 1, 1]], [AIRPLANE]) == pytest.approx([19 / 24])


def test_part_only_in_prediction_counts_zero():
    # part 4: 3/4; part 5 predicted once but absent from the target: 0/1.
    assert shape_ious([[4, 4, 4, 5]], [[4, 4, 4, 4]], [BAG]) == pytest.approx([3 / 8])


def test_prediction_outside_category_only_lowers_true_part():
    # The point predicted as airplane part 0 matches no bag part: part 4 gets 3/4, part 5 is
    # absent from both (1), as in the original unrestricted evaluation.
    assert shape_ious([[4, 4, 4, 0]], [[4, 4, 4, 4]], [BAG]) == pytest.approx([7 / 8])


def test_category_restriction():
    # One bag shape, 4 points. Global argmax picks airplane part 0 for the last point; within
    # the bag's parts (4, 5) the best is part 5.
    logits = torch.full((1, 50, 4), -5.0)  # (S, P, N)
    logits[0, 4, :3] = 2.0
    logits[0, 0, 3] = 3.0
    logits[0, 5, 3] = 1.0
    restricted = restrict_logits(logits, torch.tensor([BAG]))
    assert restricted.tolist() == [[4, 4, 4, 5]]
    assert logits.argmax(dim=1).tolist() == [[4, 4, 4, 0]]
    target = [[4, 4, 4, 4]]
    assert shape_ious(restricted, target, [BAG]) == pytest.approx([3 / 8])
    assert shape_ious(logits.argmax(dim=1), target, [BAG]) == pytest.approx([7 / 8])


def test_restrict_logits_layouts_and_range():
    gen = torch.Generator().manual_seed(0)
    cats = torch.arange(16)
    logits = torch.randn(16, 50, 32, generator=gen, dtype=torch.float64)  # (S, P, N)
    a = restrict_logits(logits, cats, part_dim=1)
    b = restrict_logits(logits.transpose(1, 2), cats, part_dim=2)  # (S, N, P)
    c = restrict_logits(logits.transpose(1, 2), cats, part_dim=-1)
    assert torch.equal(a, b) and torch.equal(a, c)
    start = torch.tensor(iou.PART_OFFSETS)[:, None]
    stop = start + torch.tensor(iou.PARTS_PER_CATEGORY)[:, None]
    assert bool(((a >= start) & (a < stop)).all())
    # Within the category, it is the plain argmax of the category's slice.
    for s in range(16):
        lo, hi = iou.PART_OFFSETS[s], iou.PART_OFFSETS[s] + iou.PARTS_PER_CATEGORY[s]
        assert torch.equal(a[s], logits[s, lo:hi].argmax(dim=0) + lo)


def test_instance_vs_class_miou_and_accuracy():
    target = [[4, 4, 5, 5], [4, 4, 5, 5], [4, 4, 4, 4], [0, 0, 1, 1]]
    pred = [[4, 4, 5, 5], [4, 4, 5, 5], [5, 5, 5, 5], [0, 0, 0, 1]]
    category = [BAG, BAG, BAG, AIRPLANE]
    ious = shape_ious(pred, target, category)
    assert ious == pytest.approx([1.0, 1.0, 0.0, 19 / 24])
    result = segmentation_metrics(pred, target, category)
    assert result["instance_miou"] == pytest.approx((2 + 19 / 24) / 4)
    assert result["class_miou"] == pytest.approx((2 / 3 + 19 / 24) / 2)
    assert result["per_category"] == {
        "airplane": {"miou": pytest.approx(19 / 24), "count": 1},
        "bag": {"miou": pytest.approx(2 / 3), "count": 3},
    }
    assert result["accuracy"] == pytest.approx(11 / 16)
    assert point_accuracy(pred, target) == pytest.approx(11 / 16)
    # Per-part recall: part 0 2/2, part 1 1/2, part 4 4/8, part 5 4/4.
    assert result["mean_part_accuracy"] == pytest.approx((1 + 0.5 + 0.5 + 1) / 4)
    assert result["num_shapes"] == 4


def test_matches_original_transcription_random():
    rng = np.random.default_rng(0)
    num_shapes, num_points = 64, 50
    category = rng.integers(0, 16, size=(num_shapes, 1))
    offsets = np.asarray(iou.PART_OFFSETS)[category[:, 0]]
    counts = np.asarray(iou.PARTS_PER_CATEGORY)[category[:, 0]]
    target = offsets[:, None] + rng.integers(0, 100, size=(num_shapes, num_points)) % counts[:, None]
    pred = rng.integers(0, 50, size=(num_shapes, num_points))
    near = rng.random((num_shapes, num_points)) < 0.7
    pred = np.where(near, target, pred)
    ours = shape_ious(torch.from_numpy(pred), torch.from_numpy(target), category)
    assert ours == pytest.approx(original_calculate_shape_iou(pred, target, category))


def test_bad_input_messages():
    with pytest.raises(ValueError, match="one category id per shape"):
        shape_ious([[0, 1]], [[0, 1]], [0, 1])
    with pytest.raises(ValueError, match=r"\(S, N\)"):
        shape_ious([0, 1], [0, 1], [0])
    with pytest.raises(ValueError, match="category ids"):
        shape_ious([[0, 1]], [[0, 1]], [16])
    with pytest.raises(ValueError, match="50-way"):
        restrict_logits(torch.zeros(1, 4, 3), torch.tensor([0]))
