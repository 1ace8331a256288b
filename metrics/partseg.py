"""Part segmentation: the training step, evaluation of a model over a loader, and the reported metrics.

Works on whatever DGCNN-style part-segmentation model and loader it is handed: ``model(x (B, 3, N),
one_hot (B, 16)) -> logits (B, P, N)``, batches ``(points (B, N, 3), category (B,), part_ids (B, N))``
with global part ids. Metrics come from ``metrics.partseg_iou``: the headline ("restricted") numbers take the
argmax over the parts of each shape's category only; the "unrestricted" numbers (argmax over all head
outputs) are the original evaluation's and are reported next to them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from datasets.tables import SHAPENET_PART_NUM_CATEGORIES as NUM_CATEGORIES
from datasets.tables import SHAPENET_PART_NUM_PARTS as NUM_PARTS
from metrics.partseg_iou import restrict_logits, segmentation_metrics
from util.progress import progress_bar
from util.device import autocast_context

__all__ = ["METRIC_NOTE", "PartSegEvaluator", "category_one_hot", "model_input", "describe_metrics",
           "flat_metrics"]

METRIC_NOTE = ("restricted: argmax over the parts of each shape's category (headline numbers); "
               "unrestricted: argmax over all head outputs, as the original evaluation; class_miou is the mean "
               "over the categories present in the split")

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def category_one_hot(category: torch.Tensor, num_categories: int, dtype: torch.dtype) -> torch.Tensor:
    """(B,) int category ids -> (B, num_categories) one-hot of ``dtype``."""
    return F.one_hot(category.long(), num_categories).to(dtype)  # (B, num_categories)


def model_input(points: torch.Tensor, category: torch.Tensor, device: torch.device,
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader batch's ``points (B, N, 3)`` and ``category (B,)`` -> the part-seg network's inputs on ``device``:
    ``x (B, 3, N)`` of ``dtype`` and the category one-hot ``(B, 16)``."""
    x = points.to(device, dtype=dtype, non_blocking=True).transpose(1, 2).contiguous()  # (B, 3, N)
    return x, category_one_hot(category.to(device), NUM_CATEGORIES, dtype)  # (B, 16)


class PartSegEvaluator:
    """Runs a part-segmentation model over a loader (eval mode, no grad) and computes the metrics.

    Args:
        device: where the model lives.
        amp: "none" | "bf16" | "fp16" autocast (CUDA only).
        seg_start_index: first global part id of the head's parts (0 for the 50-way head; the chosen
            category's first part with a one-category head, as in the original).
        loss_fn: ``(logits (B, P, N), target (B, N) head indices) -> scalar``, reported as ``loss``.
    """

    def __init__(self, device: torch.device, amp: str, seg_start_index: int, loss_fn: LossFn) -> None:
        self.device, self.amp, self.seg_start_index, self.loss_fn = device, amp, seg_start_index, loss_fn

    @torch.no_grad()
    def predict(self, model: nn.Module, loader: Any, progress: bool = False, desc: str = "eval") -> dict[str, Any]:
        """Predictions of ``model`` over ``loader`` in its order.

        Returns:
            {"category" (S,), "target" (S, N) global ids, "pred" (S, N) global ids restricted to each
            shape's category, "pred_unrestricted" (S, N) argmax over all head outputs, "loss" mean loss per
            shape}.
        """
        model.eval()
        dtype = next(model.parameters()).dtype
        cats, targets, preds, preds_all = [], [], [], []
        loss_sum, count = 0.0, 0
        for points, category, part_ids in progress_bar(loader, desc=desc, enabled=progress):
            x, one_hot = model_input(points, category, self.device, dtype)  # (B, 3, N), (B, 16)
            category = category.to(self.device)
            part_ids = part_ids.to(self.device)
            with autocast_context(self.device, self.amp):
                logits = model(x, one_hot)  # (B, P, N)
            logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
            loss_sum += float(self.loss_fn(logits, part_ids - self.seg_start_index)) * x.shape[0]
            count += x.shape[0]
            unrestricted = logits.argmax(dim=1) + self.seg_start_index  # (B, N) global ids
            # Differs from the original: its reported mIoU used the unrestricted argmax over all 50 parts;
            # the headline numbers here restrict it to the shape's category (both are reported).
            if logits.shape[1] == NUM_PARTS:
                restricted = restrict_logits(logits, category, part_dim=1)  # (B, N)
            else:
                restricted = unrestricted  # a one-category head only has that category's parts
            cats.append(category.cpu().numpy())
            targets.append(part_ids.cpu().numpy().astype(np.int16))
            preds.append(restricted.cpu().numpy().astype(np.int16))
            preds_all.append(unrestricted.cpu().numpy().astype(np.int16))
        return {
            "category": np.concatenate(cats),
            "target": np.concatenate(targets),
            "pred": np.concatenate(preds),
            "pred_unrestricted": np.concatenate(preds_all),
            "loss": loss_sum / max(count, 1),
        }

    def evaluate(self, model: nn.Module, loader: Any, progress: bool = False,
                 desc: str = "eval") -> tuple[dict[str, Any], dict[str, Any]]:
        """({"loss", "restricted": {...}, "unrestricted": {...}}, predictions) of ``model`` on ``loader``.

        Each metrics block is ``metrics.partseg_iou.segmentation_metrics`` (instance_miou, class_miou,
        accuracy, mean_part_accuracy, per_category, num_shapes).
        """
        out = self.predict(model, loader, progress, desc)
        metrics = {
            "loss": float(out["loss"]),
            "restricted": segmentation_metrics(out["pred"], out["target"], out["category"]),
            "unrestricted": segmentation_metrics(out["pred_unrestricted"], out["target"], out["category"]),
        }
        return metrics, out


def flat_metrics(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    """The scalar numbers of an ``evaluate`` result as ``{prefix/name: value}`` for logging."""
    flat = {f"{prefix}/loss": metrics["loss"]}
    for mode, tag in (("restricted", ""), ("unrestricted", "_unrestricted")):
        for name in ("instance_miou", "class_miou", "accuracy", "mean_part_accuracy"):
            flat[f"{prefix}/{name}{tag}"] = metrics[mode][name]
    return flat


def describe_metrics(metrics: dict[str, Any], split: str) -> str:
    """One log line: headline (restricted) and unrestricted instance / class mIoU and accuracy."""
    r, u = metrics["restricted"], metrics["unrestricted"]
    return (f"{split}: instance mIoU {100 * r['instance_miou']:.2f} class mIoU {100 * r['class_miou']:.2f} "
            f"acc {100 * r['accuracy']:.2f} (restricted to the category's parts) | unrestricted argmax: "
            f"instance mIoU {100 * u['instance_miou']:.2f} class mIoU {100 * u['class_miou']:.2f} "
            f"acc {100 * u['accuracy']:.2f} | loss {metrics['loss']:.4f}, {r['num_shapes']} shapes")
