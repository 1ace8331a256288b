"""Classification fine-tuning: the training step and evaluation of a classifier over a loader.

Works on whatever classifier and loader it is handed: ``model(x (B, 3, N)) -> logits (B, C)``, batches
``(points (B, N, 3), label (B,))``. Reported metrics are the ones point-cloud papers report: overall
accuracy (OA) and mean class accuracy (mAcc, the mean of per-class recall), plus per-class accuracy and
the confusion matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from util.progress import progress_bar
from util.device import autocast_context

__all__ = ["ClsEvaluator", "class_accuracies", "confusion_matrix", "to_model_input", "classification_metrics", "describe"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def to_model_input(points: torch.Tensor, labels: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader batch ``(points (B, N, 3), labels (B,) or (B, 1))`` -> ``(x (B, 3, N), y (B,) long)`` on ``device``."""
    x = points.to(device, non_blocking=True).transpose(1, 2).contiguous()  # (B, 3, N)
    y = torch.as_tensor(labels).to(device, non_blocking=True).reshape(-1).long()  # (B,)
    return x, y


def class_accuracies(y_true: np.ndarray, y_pred: np.ndarray) -> dict[int, float]:
    """Per-class accuracy (recall) for each class present in ``y_true`` (N,), given ``y_pred`` (N,)."""
    return {int(c): float(np.mean(y_pred[y_true == c] == c)) for c in np.unique(y_true)}


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (num_classes, num_classes): rows are true classes, columns predicted classes."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)), 1)
    return cm


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int,
                           class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """OA, mAcc (mean over the classes present in ``y_true`` of their recall), per-class accuracy, confusion.

    Args:
        y_true, y_pred: (N,) integer labels.
    """
    y_true = np.asarray(y_true).reshape(-1)  # (N,)
    y_pred = np.asarray(y_pred).reshape(-1)  # (N,)
    per_class = class_accuracies(y_true, y_pred)

    def name(c: int) -> str:
        return class_names[c] if class_names is not None and c < len(class_names) else str(c)

    return {
        "overall_accuracy": float(np.mean(y_pred == y_true)),
        "mean_class_accuracy": float(np.mean(list(per_class.values()))),
        "per_class_accuracy": {name(c): acc for c, acc in per_class.items()},
        "confusion_matrix": confusion_matrix(y_true, y_pred, num_classes).tolist(),
        "num_samples": int(len(y_true)),
    }


class ClsEvaluator:
    """Runs a classifier over a loader (eval mode, no grad) and computes the metrics.

    Args:
        device, amp: where and in which precision the model runs.
        loss_fn: reported as ``loss`` (mean over samples).
        num_classes: size of the confusion matrix; class_names: names in the per-class table.
    """

    def __init__(self, device: torch.device, amp: str, loss_fn: LossFn, num_classes: int,
                 class_names: Sequence[str] | None = None) -> None:
        self.device, self.amp, self.loss_fn = device, amp, loss_fn
        self.num_classes, self.class_names = num_classes, class_names

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any, progress: bool = False,
                 desc: str = "eval") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(metrics with ``loss``, {"target" (N,), "pred" (N,)}) of ``model`` on ``loader`` in its order."""
        was_training = model.training
        model.eval()
        targets, preds = [], []
        loss_sum, count = 0.0, 0
        try:
            for points, labels in progress_bar(loader, desc=desc, enabled=progress):
                x, y = to_model_input(points, labels, self.device)
                with autocast_context(self.device, self.amp):
                    logits = model(x)  # (B, C)
                logits = logits.float()
                loss_sum += float(self.loss_fn(logits, y)) * len(y)
                count += len(y)
                targets.append(y.cpu().numpy())
                preds.append(logits.argmax(dim=1).cpu().numpy())
        finally:
            model.train(was_training)
        out = {"target": np.concatenate(targets), "pred": np.concatenate(preds)}
        metrics = classification_metrics(out["target"], out["pred"], self.num_classes, self.class_names)
        metrics["loss"] = loss_sum / max(count, 1)
        return metrics, out


def describe(metrics: dict[str, Any], split: str) -> str:
    """One log line: OA, mAcc, loss, sample count."""
    return (f"{split}: OA {100 * metrics['overall_accuracy']:.2f} mAcc {100 * metrics['mean_class_accuracy']:.2f} "
            f"loss {metrics['loss']:.4f} ({metrics['num_samples']} samples)")
