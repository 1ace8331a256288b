"""ShapeNetPart part segmentation: fine-tune a (CrossPoint-pretrained) DGCNN, report instance / class mIoU.

Fine-tuning with the paper's settings (scripts/script.sh)::

    python train_partseg.py --exp_name dgcnn_partseg --pretrained_path dgcnn_partseg_best.pth \
        --batch_size 8 --k 40 --test_batch_size 8 --epochs 300

``--pretrained_path`` takes the published part-segmentation pretraining file, this project's
``train_crossmodal.py --model dgcnn_seg`` output (its run directory or ``point_encoder_best.pth``),
or nothing (training from scratch). Loading checks that exactly the segmentation head (conv7..conv11)
is new. Several GPUs: ``torchrun --standalone --nproc_per_node N train_partseg.py ...``
(``--batch_size`` is the global batch). Resume: ``python train_partseg.py --resume runs/<exp_name>``.
Evaluation only::

    python train_partseg.py --eval --model_path runs/dgcnn_partseg/checkpoints/partseg_best.pth

Best-checkpoint selection: by default a seeded, per-category stratified ``--val_fraction`` of
train+val is held out and the epoch with the best held-out instance mIoU is kept (the model trains
on the rest); ``--select_best_on test`` trains on all of train+val and keeps the epoch with the best
test instance mIoU, as the original script did. The final numbers are those of the kept checkpoint
on the test split.

Reported metrics (``util/metrics.py``): instance mIoU, class mIoU, per-category mIoU, per-point
accuracy. The headline ("restricted") numbers take the argmax over the parts of each shape's
category only; the "unrestricted" numbers (argmax over all 50 parts, the original's evaluation) are
reported next to them.

Output under ``<output_dir>/<exp_name>/``: ``config.json``, ``log.txt``, ``metrics.jsonl``,
``results.json`` (``results_eval.json`` for ``--eval``), ``partseg_test_examples.png`` (``--plot``)
and ``checkpoints/`` with ``partseg_{best,last}.pth`` (plain state dicts in the official format,
each with a ``.json`` sidecar) and ``training_state_last.pt``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from datasets.shapenet_part import CATEGORIES, NUM_CATEGORIES, NUM_PARTS, PARTS_PER_CATEGORY, ShapeNetPart
from datasets.synthetic import data_kind
from models.dgcnn import DGCNNPartSeg
from util import distributed as du
from util.checkpoint import atomic_write_text, load_pretrained, load_state_dict_file, read_weights_meta, save_weights
from util.logger import Logger
from util.metrics import format_category_table, restrict_logits, segmentation_metrics
from util.training import (
    NonFiniteLossError,
    autocast_context,
    get_rng_state,
    load_training_state,
    loader_kwargs,
    make_generator,
    make_grad_scaler,
    resolve_device,
    resolve_resume_path,
    save_training_state,
    seed_everything,
    set_rng_state,
    stratified_split,
    train_one_epoch,
)

STATE_FILE = "training_state_last.pt"
HEAD_PREFIXES = ("conv7.", "conv8.", "conv9.", "conv10.", "conv11.")
DEFAULT_K = 40
DEFAULT_EMB_DIMS = 1024
PLOT_FILE = "partseg_test_examples.png"
METRIC_NOTE = ("restricted: argmax over the parts of each shape's category (headline numbers); "
               "unrestricted: argmax over all head outputs, as the original evaluation; class_miou is the mean "
               "over the categories present in the split")


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface; defaults are the published fine-tuning settings."""
    p = argparse.ArgumentParser(
        description="ShapeNetPart part segmentation with DGCNN (CrossPoint fine-tuning and evaluation).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("run")
    g.add_argument("--exp_name", type=str, default=None,
                   help="run name; output goes to <output_dir>/<exp_name> (default 'dgcnn_partseg', "
                        "'dgcnn_partseg_eval' with --eval, or the resumed run)")
    g.add_argument("--output_dir", type=str, default="runs", help="parent directory of runs")
    g.add_argument("--data_root", type=str, default="data", help="data root with shapenet_part_seg_hdf5_data/")
    g.add_argument("--device", type=str, default="auto", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--seed", type=int, default=1, help="random seed (original: 1)")
    g.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels (torch.use_deterministic_algorithms, cuDNN deterministic)")
    g.add_argument("--resume", type=str, default=None,
                   help="run directory or training_state_last.pt to resume from (continues at the next epoch)")
    g.add_argument("--wandb", type=str, default="disabled", choices=["online", "offline", "disabled"],
                   help="Weights & Biases logging (the original always logged online)")
    g.add_argument("--wandb_project", type=str, default="CrossPoint", help="wandb project")

    g = p.add_argument_group("model and weights")
    g.add_argument("--k", type=int, default=None,
                   help=f"DGCNN neighbours (paper fine-tuning: {DEFAULT_K}; with --eval the checkpoint's value)")
    g.add_argument("--emb_dims", type=int, default=None,
                   help=f"global feature size (paper: {DEFAULT_EMB_DIMS}; default: read from the loaded weights)")
    g.add_argument("--dropout", type=float, default=0.5, help="dropout of the segmentation head (paper: 0.5)")
    g.add_argument("--edgeconv", type=str, default="fast", choices=["fast", "plain"],
                   help="EdgeConv implementation (same function; 'plain' materialises the edge tensor like the original)")
    g.add_argument("--pretrained_path", type=str, default="",
                   help="weights to fine-tune from: the published part-seg pretraining .pth, a "
                        "train_crossmodal.py --model dgcnn_seg run directory or point_encoder_*.pth, or "
                        "empty to train from scratch")
    g.add_argument("--eval", action="store_true", help="only evaluate --model_path on the test split")
    g.add_argument("--model_path", type=str, default="",
                   help="fine-tuned weights to evaluate with --eval (partseg_best.pth or an official "
                        "fine-tuned state dict)")

    g = p.add_argument_group("data")
    g.add_argument("--num_points", type=int, default=2048, help="points per shape (paper: 2048)")
    g.add_argument("--class_choice", type=str, default=None, choices=list(CATEGORIES) + ["motor"],
                   help="train and evaluate on one category only (its part count becomes the head size, "
                        "as in the original); default: all 16")
    g.add_argument("--augment", action="store_true",
                   help="DGCNN's training augmentation: random per-axis scale U(2/3, 3/2), shift U(-0.2, 0.2) "
                        "and point shuffling (paper: off; CrossPoint's loader only shuffles the points, which "
                        "a DGCNN is invariant to)")
    g.add_argument("--num_workers", type=int, default=4, help="DataLoader workers (original: 8)")

    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=300, help="epochs (paper script: 300)")
    g.add_argument("--batch_size", type=int, default=8,
                   help="global training batch, split over DDP ranks (paper script: 8)")
    g.add_argument("--test_batch_size", type=int, default=8, help="evaluation batch (paper script: 8)")
    g.add_argument("--optimizer", type=str, default="sgd", choices=["sgd", "adam"],
                   help="optimizer (paper: sgd; the original's --use_sgd False gives adam)")
    g.add_argument("--lr", type=float, default=0.1,
                   help="initial learning rate (paper: 0.1 for SGD; the original passes --lr 0.001 and "
                        "multiplies it by 100 for SGD, so pass e.g. 0.001 with --optimizer adam)")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (paper: 0.9)")
    g.add_argument("--wd", type=float, default=1e-4, help="weight decay (paper: 1e-4)")
    g.add_argument("--scheduler", type=str, default="cos", choices=["cos", "step"],
                   help="cos: cosine annealing to --eta_min per epoch (paper); step: x0.5 every 20 epochs, "
                        "floored at 1e-5 (the original's alternative)")
    g.add_argument("--eta_min", type=float, default=1e-3, help="final learning rate of the cosine schedule (paper: 1e-3)")
    g.add_argument("--label_smoothing", type=float, default=0.2,
                   help="label-smoothing eps of the cross-entropy (paper: 0.2; 0 = plain cross-entropy)")
    g.add_argument("--grad_clip", type=float, default=None, help="clip the gradient norm (original: none)")
    g.add_argument("--max_steps_per_epoch", type=int, default=None, help="cap the steps per epoch (quick runs)")
    g.add_argument("--stop_after", type=int, default=None,
                   help="stop cleanly after this many epochs in this invocation; continue later with --resume")

    g = p.add_argument_group("best-checkpoint selection and evaluation")
    g.add_argument("--select_best_on", type=str, default="val", choices=["val", "test"],
                   help="val: train on train+val minus a held-out --val_fraction and keep the epoch with the "
                        "best held-out instance mIoU; test: train on all of train+val and keep the epoch with "
                        "the best test instance mIoU (the original's behaviour, which selects on the test set)")
    g.add_argument("--val_fraction", type=float, default=0.05,
                   help="fraction of every category of train+val held out for selection (seeded by --seed)")
    g.add_argument("--eval_every", type=int, default=1,
                   help="evaluate the selection split every N epochs (and after the last; original: 1)")
    g.add_argument("--test_every", type=int, default=0,
                   help="with --select_best_on val, also log test metrics every N epochs (0: only the final "
                        "evaluation of the kept checkpoint)")
    g.add_argument("--eval_at_init", action="store_true",
                   help="also evaluate the test split before the first epoch (stored as test_at_init)")
    g.add_argument("--plot", action="store_true",
                   help=f"write {PLOT_FILE}: ground truth vs prediction for a few test shapes")
    g.add_argument("--plot_shapes", type=int, default=4, help="shapes in the --plot figure (one per category)")

    g = p.add_argument_group("performance and logging")
    g.add_argument("--amp", type=str, default="none", choices=["none", "bf16", "fp16"],
                   help="autocast on CUDA (original: fp32); ignored on CPU")
    g.add_argument("--print_freq", type=int, default=50, help="log every N steps")
    g.add_argument("--no_progress", action="store_true", help="no tqdm bars")
    return p


# ----------------------------------------------------------------------------------------------
# Loss, training step, evaluation
# ----------------------------------------------------------------------------------------------


def smoothed_cross_entropy(logits: torch.Tensor, target: torch.Tensor, eps: float = 0.2) -> torch.Tensor:
    """Label-smoothed cross-entropy of the original ``cal_loss``.

    The target distribution puts ``1 - eps`` on the true part and ``eps / (P - 1)`` on each other
    part (the original's smoothing; ``eps = 0`` is the plain cross-entropy), averaged over points.

    Args:
        logits: (B, P, N) part logits.
        target: (B, N) int64 part indices in [0, P).
        eps: smoothing (paper: 0.2).
    Returns:
        scalar loss in the logits' dtype (float32 for half-precision logits).
    """
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    num_parts = logits.shape[1]
    log_prob = F.log_softmax(logits, dim=1)  # (B, P, N)
    nll = -log_prob.gather(1, target.unsqueeze(1)).squeeze(1)  # (B, N)
    if eps == 0.0:
        return nll.mean()
    # sum_p q_p * -log p_p with q = (1 - eps) on the target and eps / (P - 1) elsewhere.
    others = -log_prob.sum(dim=1) - nll  # (B, N)
    return ((1.0 - eps) * nll + eps / (num_parts - 1) * others).mean()


def category_one_hot(category: torch.Tensor, num_categories: int, dtype: torch.dtype) -> torch.Tensor:
    """(B,) int category ids -> (B, num_categories) one-hot of ``dtype``."""
    return F.one_hot(category.long(), num_categories).to(dtype)  # (B, num_categories)


class PartSegStep:
    """One fine-tuning forward pass: ``batch -> (loss, {"acc"})`` for ``util.training.train_one_epoch``.

    Args:
        model: DGCNNPartSeg (possibly DDP-wrapped): (B, 3, N), (B, 16) -> (B, P, N).
        device: training device.
        amp: "none" | "bf16" | "fp16".
        seg_start_index: subtracted from the global part ids (the chosen category's first part
            with --class_choice, else 0), as in the original.
        label_smoothing: eps of :func:`smoothed_cross_entropy`.
        dtype: dtype of the points fed to the model (the model's parameter dtype).
    """

    def __init__(self, model: nn.Module, device: torch.device, amp: str, seg_start_index: int,
                 label_smoothing: float, dtype: torch.dtype = torch.float32) -> None:
        self.model = model
        self.device = device
        self.amp = amp
        self.seg_start_index = seg_start_index
        self.label_smoothing = label_smoothing
        self.dtype = dtype

    def __call__(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        points, category, part_ids = batch  # (B, N, 3), (B,), (B, N)
        x = points.to(self.device, dtype=self.dtype, non_blocking=True).transpose(1, 2).contiguous()  # (B, 3, N)
        one_hot = category_one_hot(category.to(self.device), NUM_CATEGORIES, x.dtype)  # (B, 16)
        target = part_ids.to(self.device, non_blocking=True) - self.seg_start_index  # (B, N)
        with autocast_context(self.device, self.amp):
            logits = self.model(x, one_hot)  # (B, P, N)
        loss = smoothed_cross_entropy(logits, target, self.label_smoothing)
        # Differs from the original: training logs loss and per-point accuracy, not the training-set mIoU.
        acc = (logits.detach().argmax(dim=1) == target).float().mean()
        return loss, {"acc": acc}


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp: str,
    seg_start_index: int,
    label_smoothing: float,
    progress: bool = False,
    desc: str = "eval",
) -> dict[str, np.ndarray | float]:
    """Run ``model`` (eval mode, no grad) over ``loader`` in its order.

    Args:
        model: an unwrapped DGCNNPartSeg.
        loader: batches (points (B, N, 3), category (B,), part_ids (B, N) global ids), unshuffled.
        seg_start_index: first global part id of the head's parts (0 for the 50-way head).
    Returns:
        {"category" (S,), "target" (S, N) global ids, "pred" (S, N) global ids restricted to each
        shape's category, "pred_unrestricted" (S, N) argmax over all head outputs, "loss" mean
        smoothed cross-entropy per shape}.
    """
    model.eval()
    dtype = next(model.parameters()).dtype
    cats, targets, preds, preds_all = [], [], [], []
    loss_sum, count = 0.0, 0
    for points, category, part_ids in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        x = points.to(device, dtype=dtype).transpose(1, 2).contiguous()  # (B, 3, N)
        category = category.to(device)
        part_ids = part_ids.to(device)
        with autocast_context(device, amp):
            logits = model(x, category_one_hot(category, NUM_CATEGORIES, x.dtype))  # (B, P, N)
        logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        loss_sum += float(smoothed_cross_entropy(logits, part_ids - seg_start_index, label_smoothing)) * x.shape[0]
        count += x.shape[0]
        unrestricted = logits.argmax(dim=1) + seg_start_index  # (B, N) global ids
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


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp: str,
    seg_start_index: int,
    label_smoothing: float,
    progress: bool = False,
    desc: str = "eval",
) -> tuple[dict[str, Any], dict[str, np.ndarray | float]]:
    """Metrics of ``model`` on ``loader``: ({"loss", "restricted": {...}, "unrestricted": {...}}, predictions).

    Each metrics block is ``util.metrics.segmentation_metrics`` (instance_miou, class_miou,
    accuracy, mean_part_accuracy, per_category, num_shapes).
    """
    out = predict(model, loader, device, amp, seg_start_index, label_smoothing, progress, desc)
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


# ----------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------


def resolve_weights_path(path: str, what: str) -> Path:
    """A weights file, or a pretraining run directory (its checkpoints/point_encoder_best.pth)."""
    p = Path(path)
    for candidate in (p, p / "point_encoder_best.pth", p / "checkpoints" / "point_encoder_best.pth"):
        if candidate.is_file():
            return candidate
    raise SystemExit(
        f"train_partseg.py: {what} {path}: no weights file found (looked at {p}, {p / 'point_encoder_best.pth'}, "
        f"{p / 'checkpoints' / 'point_encoder_best.pth'}). Pass a .pth state dict or a pretraining run directory."
    )


def infer_emb_dims(state_dict: dict[str, torch.Tensor], source: Path) -> int:
    """emb_dims of a DGCNN part-seg state dict (the output channels of conv6)."""
    weight = state_dict.get("conv6.0.weight")
    if weight is None:
        raise SystemExit(
            f"train_partseg.py: {source} has no 'conv6.0.weight', so it is not a DGCNN part-segmentation "
            "checkpoint (DGCNN_partseg / --model dgcnn_seg). Classification (--model dgcnn) weights cannot "
            "initialise the part-segmentation network."
        )
    return int(weight.shape[0])


def load_partseg_init(model: nn.Module, state_dict: dict[str, torch.Tensor], source: Path) -> list[str]:
    """Load fine-tuning initial weights and return the keys left at their initial values.

    A pretraining state dict (no ``conv11.weight``) must provide every key except the segmentation
    head: the new keys must be exactly the model's conv7..conv11 keys (like MoCo's check after a
    non-strict load). A full fine-tuned state dict is loaded strictly (no new keys).
    Returns the new keys in the model's order.
    """
    if "conv11.weight" in state_dict:
        load_pretrained(model, state_dict)
        return []
    report = load_pretrained(model, state_dict, allowed_missing_prefixes=HEAD_PREFIXES)
    head_keys = [k for k in model.state_dict() if k.startswith(HEAD_PREFIXES)]
    if set(report.missing) != set(head_keys) or report.unexpected:
        raise SystemExit(
            f"train_partseg.py: {source}: expected exactly the segmentation head to be new, got new keys "
            f"{sorted(report.missing)} (head: {head_keys}), unexpected {report.unexpected}."
        )
    return head_keys


def summarize_keys(keys: list[str]) -> str:
    """'conv7.* (6), conv8.* (6), ...' for a list of state-dict keys."""
    groups: dict[str, int] = {}
    for key in keys:
        top = key.split(".")[0]
        groups[top] = groups.get(top, 0) + 1
    return ", ".join(f"{name}.* ({n})" for name, n in groups.items())


def weights_meta(model_args: dict[str, Any], class_choice: str | None, seg_start_index: int, epoch: int,
                 config: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Sidecar JSON of a fine-tuned weights file (rebuilds the model from the files alone)."""
    return {"model": "dgcnn_partseg", "kind": "partseg", "model_args": model_args, "class_choice": class_choice,
            "seg_start_index": seg_start_index, "epoch": epoch, "source": "train_partseg.py", "config": config,
            **extra}


def build_model(model_args: dict[str, Any], edgeconv: str) -> DGCNNPartSeg:
    """DGCNNPartSeg from the ``model_args`` stored in the sidecar (k, emb_dims, num_parts, dropout)."""
    return DGCNNPartSeg(k=model_args["k"], emb_dims=model_args["emb_dims"], num_parts=model_args["num_parts"],
                        num_categories=NUM_CATEGORIES, pretrain=False, dropout=model_args["dropout"],
                        edgeconv=edgeconv)


def load_finetuned(path: Path, k: int | None, class_choice: str | None, dropout: float, edgeconv: str,
                   warn: bool = True) -> tuple[DGCNNPartSeg, dict[str, Any], str | None]:
    """Rebuild a fine-tuned DGCNNPartSeg from a weights file (+ sidecar) and load it strictly.

    k: the sidecar's value unless given; emb_dims and the head size come from the weights; the
    category of a one-category head comes from ``class_choice`` or the sidecar.
    Returns (model on CPU, model_args, class_choice).
    """
    state_dict = load_state_dict_file(path)
    meta = read_weights_meta(path) or {}
    if "conv11.weight" not in state_dict:
        raise SystemExit(
            f"train_partseg.py: --model_path {path} has no segmentation head (conv11.weight); it looks like a "
            "pretraining checkpoint. Fine-tune it first (--pretrained_path), then evaluate the result."
        )
    saved = meta.get("model_args", {})
    if k is not None and "k" in saved and saved["k"] != k and warn:
        warnings.warn(f"--k {k} differs from the k={saved['k']} the checkpoint was trained with.", stacklevel=2)
    model_args = {"k": k if k is not None else int(saved.get("k", DEFAULT_K)),
                  "emb_dims": infer_emb_dims(state_dict, path),
                  "num_parts": int(state_dict["conv11.weight"].shape[0]),
                  "dropout": float(saved.get("dropout", dropout))}
    class_choice = class_choice or meta.get("class_choice")
    expected = NUM_PARTS if class_choice is None else PARTS_PER_CATEGORY[CATEGORIES.index(_canonical(class_choice))]
    if model_args["num_parts"] != expected:
        raise SystemExit(
            f"train_partseg.py: {path} has a {model_args['num_parts']}-part head but "
            f"{'all categories need 50' if class_choice is None else f'{class_choice} has {expected} parts'}; "
            "pass the --class_choice the model was trained with."
        )
    model = build_model(model_args, edgeconv)
    load_pretrained(model, state_dict)
    return model, model_args, class_choice


def _canonical(class_choice: str | None) -> str | None:
    return "motorbike" if class_choice == "motor" else class_choice


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def build_datasets(args: argparse.Namespace) -> tuple[Dataset, Dataset | None, Dataset, ShapeNetPart]:
    """(train, held-out val or None, test, the train+val ShapeNetPart) for the chosen selection mode."""
    trainval = ShapeNetPart(args.data_root, "trainval", num_points=args.num_points,
                            class_choice=args.class_choice, augment=args.augment)
    test = ShapeNetPart(args.data_root, "test", num_points=args.num_points, class_choice=args.class_choice)
    if args.select_best_on == "test":
        return trainval, None, test, trainval
    # Differs from the original: it trained on all of train+val and kept the epoch with the best test
    # mIoU; by default a stratified part of train+val is held out to select the checkpoint instead.
    train_idx, val_idx = stratified_split(trainval.labels, args.val_fraction, args.seed)
    plain = trainval
    if args.augment:
        # The held-out part is read without augmentation: a shallow copy shares the arrays.
        plain = copy.copy(trainval)
        plain.augment = False
    return Subset(trainval, train_idx.tolist()), Subset(plain, val_idx.tolist()), test, trainval


def eval_loader(dataset: Dataset, batch_size: int, device: torch.device, num_workers: int) -> DataLoader:
    """Unshuffled, unaugmented loader in dataset order (evaluation is deterministic).

    The original shuffled its test loader, which changes nothing in eval mode but the order."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=False,
                      **loader_kwargs(device, num_workers, None))


def plot_examples(dataset: Dataset, out: dict[str, Any], path: Path, num_shapes: int, title: str) -> str:
    """Ground truth vs (restricted) prediction for the first shape of up to ``num_shapes`` categories."""
    from util.partseg_plot import plot_part_segmentation

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


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def _check_args(args: argparse.Namespace, info: du.DistInfo) -> None:
    if args.eval:
        if not args.model_path:
            raise SystemExit("train_partseg.py: --eval needs --model_path (a fine-tuned partseg_best.pth).")
        return
    if args.batch_size % info.world_size:
        raise SystemExit(f"train_partseg.py: --batch_size {args.batch_size} (global) is not divisible by the "
                         f"{info.world_size} DDP processes.")
    if args.batch_size // info.world_size < 2:
        raise SystemExit("train_partseg.py: BatchNorm of the category branch needs at least 2 shapes per batch "
                         "per process; raise --batch_size.")
    for name in ("epochs", "eval_every", "plot_shapes"):
        if getattr(args, name) < 1:
            raise SystemExit(f"train_partseg.py: --{name} must be at least 1, got {getattr(args, name)}.")
    if args.select_best_on == "val" and not 0.0 < args.val_fraction < 1.0:
        raise SystemExit(f"train_partseg.py: --val_fraction must be in (0, 1), got {args.val_fraction}.")
    if args.stop_after is not None and args.stop_after < 1:
        raise SystemExit(f"train_partseg.py: --stop_after must be at least 1, got {args.stop_after}.")
    if not 0.0 <= args.label_smoothing < 1.0:
        raise SystemExit(f"train_partseg.py: --label_smoothing must be in [0, 1), got {args.label_smoothing}.")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Fine-tune (or with --eval only evaluate). Returns the results dict written to results(_eval).json."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.class_choice = _canonical(args.class_choice)
    env = du.distributed_env()
    device = resolve_device(args.device, local_rank=env.local_rank)
    info = du.init_distributed(backend=du.backend_for(device))
    try:
        _check_args(args, info)
        if args.eval:
            return _evaluate_only(args, info, device)
        return _train(args, info, device)
    finally:
        du.cleanup()


def _evaluate_only(args: argparse.Namespace, info: du.DistInfo, device: torch.device) -> dict[str, Any]:
    """--eval: evaluate --model_path on the test split (on rank 0 only) and write results_eval.json."""
    run_dir = Path(args.output_dir) / (args.exp_name or "dgcnn_partseg_eval")
    results: dict[str, Any] = {}
    if info.is_main:
        path = Path(args.model_path)
        model, model_args, class_choice = load_finetuned(path, args.k, args.class_choice, args.dropout,
                                                          args.edgeconv)
        model.to(device)
        test = ShapeNetPart(args.data_root, "test", num_points=args.num_points, class_choice=class_choice)
        loader = eval_loader(test, args.test_batch_size, device, args.num_workers)
        logger = Logger(run_dir, wandb_mode=args.wandb, config=vars(args), project=args.wandb_project,
                        run_name=run_dir.name)
        logger.info(f"Evaluating {path} ({model_args}, class_choice={class_choice}) on {len(test)} test shapes, "
                    f"device {device}")
        metrics, out = evaluate(model, loader, device, args.amp, test.seg_start_index, args.label_smoothing,
                                progress=not args.no_progress, desc="test")
        logger.info(describe_metrics(metrics, "test"))
        logger.info(format_category_table(metrics["restricted"]["per_category"]))
        results = {"mode": "eval", "checkpoint": str(path), "model_args": model_args, "class_choice": class_choice,
                   "data": data_kind(args.data_root), "metric_note": METRIC_NOTE, "test": metrics}
        if args.plot:
            results["plot"] = plot_examples(test, out, run_dir / PLOT_FILE, args.plot_shapes,
                                            f"{path.name}: test shapes")
        atomic_write_text(run_dir / "results_eval.json", json.dumps(results, indent=2) + "\n")
        logger.close()
    du.barrier()
    return results


def _config(args: argparse.Namespace, device: torch.device, info: du.DistInfo, extra: dict[str, Any]) -> dict:
    cfg = dict(vars(args))
    cfg.update(resolved_device=str(device), world_size=info.world_size,
               batch_size_per_rank=args.batch_size // info.world_size, torch_version=str(torch.__version__),
               python_version=platform.python_version(), data=data_kind(args.data_root), **extra)
    return cfg


def _train(args: argparse.Namespace, info: du.DistInfo, device: torch.device) -> dict[str, Any]:
    resume_path = resolve_resume_path(args.resume, STATE_FILE, "train_partseg.py") if args.resume else None
    if args.exp_name is None:
        run_dir = resume_path.parent.parent if resume_path is not None else Path(args.output_dir) / "dgcnn_partseg"
    else:
        run_dir = Path(args.output_dir) / args.exp_name
    args.exp_name = run_dir.name
    ckpt_dir = run_dir / "checkpoints"
    seed_everything(args.seed, deterministic=args.deterministic)

    # Data.
    train_set, val_set, test_set, trainval = build_datasets(args)
    seg_start_index, num_parts = trainval.seg_start_index, trainval.seg_num_all
    per_rank = args.batch_size // info.world_size
    if len(train_set) < args.batch_size:
        raise SystemExit(f"train_partseg.py: the training set under {args.data_root} has {len(train_set)} shapes, "
                         f"fewer than --batch_size {args.batch_size}; no full batch could be formed.")
    sampler = (DistributedSampler(train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                  seed=args.seed, drop_last=True) if info.is_distributed else None)
    loader_gen = make_generator(args.seed + info.rank)
    # Differs from the original: drop_last is always on (the original kept a last partial batch when the
    # set had < 100 shapes); a batch of one shape would break the BatchNorm of the category branch.
    train_loader = DataLoader(train_set, batch_size=per_rank, shuffle=sampler is None, sampler=sampler,
                              drop_last=True, **loader_kwargs(device, args.num_workers, loader_gen))
    test_loader = eval_loader(test_set, args.test_batch_size, device, args.num_workers)
    val_loader = eval_loader(val_set, args.test_batch_size, device, args.num_workers) if val_set is not None else None
    select_loader = val_loader if val_loader is not None else test_loader

    # Model and initial weights.
    init_sd, new_keys, init_source, pre_meta = None, None, "scratch", None
    if args.pretrained_path:
        init_path = resolve_weights_path(args.pretrained_path, "--pretrained_path")
        pre_meta = read_weights_meta(init_path)
        if pre_meta is not None and pre_meta.get("model") not in ("dgcnn_seg", "dgcnn_partseg"):
            raise SystemExit(
                f"train_partseg.py: --pretrained_path {init_path} holds a {pre_meta.get('model')!r} model "
                "(per its .json sidecar); part segmentation starts from a part-segmentation encoder: "
                "train_crossmodal.py --model dgcnn_seg, or the published part-seg pretraining file."
            )
        init_sd = load_state_dict_file(init_path)
        init_source = str(init_path)
        file_emb = infer_emb_dims(init_sd, init_path)
        if args.emb_dims is not None and args.emb_dims != file_emb:
            raise SystemExit(f"train_partseg.py: --emb_dims {args.emb_dims} but {init_path} has emb_dims "
                             f"{file_emb}; drop --emb_dims to take it from the file.")
        args.emb_dims = file_emb
    k = args.k if args.k is not None else DEFAULT_K
    pre_k = (pre_meta or {}).get("model_args", {}).get("k")
    if pre_k is not None and pre_k != k and info.is_main:
        warnings.warn(f"The pretrained encoder used k={pre_k}; fine-tuning uses k={k} (paper: pretraining 15, "
                      "fine-tuning 40).", stacklevel=2)
    model_args = {"k": k, "emb_dims": args.emb_dims or DEFAULT_EMB_DIMS, "num_parts": num_parts,
                  "dropout": args.dropout}
    model = build_model(model_args, args.edgeconv)
    if init_sd is not None:
        new_keys = load_partseg_init(model, init_sd, Path(init_source))
    model.to(device)
    dtype = next(model.parameters()).dtype

    params = [p for p in model.parameters() if p.requires_grad]
    # Differs from the original: --lr is the learning rate itself (0.1); the original took --lr 0.001 and
    # multiplied it by 100 for SGD. Parameters without gradients (inv_head) are not passed (no effect).
    if args.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.wd)
    else:
        optimizer = torch.optim.Adam(params, lr=args.lr, weight_decay=args.wd)
    if args.scheduler == "cos":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs, eta_min=args.eta_min)
    else:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.5)
    scaler = make_grad_scaler(device, args.amp)
    net = du.wrap_ddp(model, device)
    step_fn = PartSegStep(net, device, args.amp, seg_start_index, args.label_smoothing, dtype)

    start_epoch, best_metric, best_epoch, history = 0, -math.inf, -1, []
    if resume_path is not None:
        state = load_training_state(resume_path, models={"model": model}, optimizer=optimizer, scheduler=scheduler,
                                    scaler=scaler, map_location=device)
        start_epoch = int(state["epoch"]) + 1
        extra = state["extra"]
        best_metric, best_epoch = float(extra.get("best_metric", -math.inf)), int(extra.get("best_epoch", -1))
        history = list(extra.get("history", []))
        rng = state["rng"]
        rng_list = rng if isinstance(rng, list) else [rng]
        if len(rng_list) == info.world_size:
            set_rng_state(rng_list[info.rank], {"train_loader": loader_gen})
        else:
            warnings.warn(f"{resume_path} holds RNG states for {len(rng_list)} processes, this run has "
                          f"{info.world_size}; RNGs are re-seeded, so the continuation is not bit-exact.",
                          stacklevel=2)
            seed_everything(args.seed + 1000 * start_epoch + info.rank)
    elif info.world_size > 1:
        # DDP broadcasts rank 0's weights; augmentations must differ between ranks.
        seed_everything(args.seed + info.rank, deterministic=args.deterministic)

    config = _config(args, device, info, {
        "model_args": model_args, "seg_start_index": seg_start_index, "init_weights": init_source,
        "train_shapes": len(train_set), "val_shapes": len(val_set) if val_set is not None else 0,
        "test_shapes": len(test_set)})
    logger = Logger(run_dir, wandb_mode=args.wandb, config=config, project=args.wandb_project,
                    run_name=args.exp_name, enabled=info.is_main)
    if info.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
        logger.info(f"Part segmentation: DGCNNPartSeg {model_args}, {len(train_set)} train / "
                    f"{config['val_shapes']} val / {len(test_set)} test shapes"
                    f"{'' if args.class_choice is None else f' ({args.class_choice})'}, {len(train_loader)} "
                    f"steps/epoch x {info.world_size} process(es), device {device}, run dir {run_dir}")
        logger.info(f"Initial weights: {init_source}" + (
            "" if new_keys is None else
            f"; new (randomly initialised) keys: {summarize_keys(new_keys) if new_keys else 'none'}"))
        if new_keys:
            logger.info("New keys: " + ", ".join(new_keys))
        if args.amp != "none" and device.type != "cuda":
            logger.info(f"--amp {args.amp} is ignored on {device.type}: training in full precision.")
        if resume_path is not None:
            logger.info(f"Resumed from {resume_path}: continuing at epoch {start_epoch}.")

    ctx = dict(args=args, info=info, device=device, model=model, net=net, step_fn=step_fn, optimizer=optimizer,
               scheduler=scheduler, scaler=scaler, train_loader=train_loader, loader_gen=loader_gen,
               select_loader=select_loader, test_loader=test_loader, logger=logger, config=config,
               ckpt_dir=ckpt_dir, model_args=model_args, seg_start_index=seg_start_index,
               steps_per_epoch=min(len(train_loader), args.max_steps_per_epoch or len(train_loader)))
    results: dict[str, Any] = {}
    try:
        if args.eval_at_init and resume_path is None and info.is_main:
            init_metrics, _ = evaluate(model, test_loader, device, args.amp, seg_start_index, args.label_smoothing,
                                       progress=not args.no_progress, desc="test (init)")
            logger.info(describe_metrics(init_metrics, "test at initialisation"))
            logger.log(flat_metrics(init_metrics, "test_init"), step=0)
            ctx["test_at_init"] = init_metrics
        best_metric, best_epoch, history, finished = _epochs(ctx, start_epoch, best_metric, best_epoch, history)
    except NonFiniteLossError as err:
        last_good = ckpt_dir / STATE_FILE
        where = (f"The last good checkpoint is {last_good}; resume from it with --resume {run_dir} after fixing "
                 "the cause." if last_good.is_file() else "No checkpoint had been written yet.")
        msg = f"ERROR: training stopped: {err}\nNo weights were written for the failing epoch. {where}"
        logger.info(msg)
        logger.close()
        raise SystemExit(msg) from err

    if finished and info.is_main:
        results = _final_evaluation(ctx, test_set, best_metric, best_epoch, history)
    du.barrier()
    logger.close()
    results = du.broadcast_object(results)
    return results


def _epochs(ctx: dict[str, Any], start_epoch: int, best_metric: float, best_epoch: int,
            history: list[dict[str, Any]]) -> tuple[float, int, list[dict[str, Any]], bool]:
    """The epoch loop: train, schedule, evaluate the selection split, checkpoint.

    Returns (best_metric, best_epoch, history, finished) where finished means all --epochs are done.
    """
    args, info, device, logger = ctx["args"], ctx["info"], ctx["device"], ctx["logger"]
    model, optimizer, scheduler = ctx["model"], ctx["optimizer"], ctx["scheduler"]
    select_split = "val" if args.select_best_on == "val" else "test"
    end_epoch = args.epochs if args.stop_after is None else min(args.epochs, start_epoch + args.stop_after)
    steps_per_epoch = ctx["steps_per_epoch"]
    for epoch in range(start_epoch, end_epoch):
        ctx["net"].train()
        t0 = time.perf_counter()
        stats = train_one_epoch(
            ctx["step_fn"], ctx["train_loader"], optimizer, device, epoch, logger if info.is_main else None,
            scaler=ctx["scaler"], max_steps=args.max_steps_per_epoch, log_every=args.print_freq,
            progress=info.is_main and not args.no_progress, grad_clip_norm=args.grad_clip,
            world_size=info.world_size, desc=f"epoch {epoch}/{args.epochs}",
        )
        lr_used = stats["lr"]
        if args.scheduler == "cos":
            scheduler.step()
        else:
            # The original's step schedule: halve every 20 epochs, never below 1e-5.
            if optimizer.param_groups[0]["lr"] > 1e-5:
                scheduler.step()
            for group in optimizer.param_groups:
                group["lr"] = max(group["lr"], 1e-5)
        means = du.all_reduce_mean({k: stats[k] for k in ("loss", "acc")}, device=device)
        record: dict[str, Any] = {"epoch": epoch, "train/loss": means["loss"], "train/acc": means["acc"],
                                  "lr": lr_used, "samples_per_s": stats["samples_per_s"]}

        is_best = False
        last = epoch + 1 == args.epochs
        if info.is_main and ((epoch + 1) % args.eval_every == 0 or last):
            # Differs from the original DDP script (which averaged per-rank mIoUs): evaluation runs on rank 0
            # over the whole split, so the numbers do not depend on the number of processes.
            metrics, _ = evaluate(model, ctx["select_loader"], device, args.amp, ctx["seg_start_index"],
                                  args.label_smoothing, progress=not args.no_progress, desc=select_split)
            record.update(flat_metrics(metrics, select_split))
            selection = metrics["restricted"]["instance_miou"]
            # As the original, a later epoch with an equal score replaces the kept one (>=).
            is_best = selection >= best_metric
            if is_best:
                best_metric, best_epoch = selection, epoch
            eval_line = describe_metrics(metrics, select_split)
        else:
            eval_line = ""
        if (info.is_main and select_split == "val" and args.test_every
                and ((epoch + 1) % args.test_every == 0 or last)):
            test_metrics, _ = evaluate(model, ctx["test_loader"], device, args.amp, ctx["seg_start_index"],
                                       args.label_smoothing, progress=not args.no_progress, desc="test")
            record.update(flat_metrics(test_metrics, "test"))
        is_best, best_metric, best_epoch = du.broadcast_object((is_best, best_metric, best_epoch))
        record["time_s"] = time.perf_counter() - t0
        history.append(record)

        # Checkpoints (rank 0). RNG states of every rank are gathered so each resumes its own.
        rng_states = du.all_gather_object(get_rng_state({"train_loader": ctx["loader_gen"]}))
        if info.is_main:
            weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            extra = {"metrics": {k: v for k, v in record.items() if k.startswith(("val/", "test/"))}}
            tags = ["last"] + (["best"] if is_best else [])
            for tag in tags:
                save_weights(weights, ctx["ckpt_dir"] / f"partseg_{tag}.pth",
                             weights_meta(ctx["model_args"], args.class_choice, ctx["seg_start_index"], epoch,
                                          ctx["config"], extra))
            save_training_state(
                ctx["ckpt_dir"] / STATE_FILE, models={"model": model}, optimizer=optimizer, epoch=epoch,
                scheduler=scheduler, scaler=ctx["scaler"], config=ctx["config"],
                rng=rng_states if info.world_size > 1 else rng_states[0],
                extra={"best_metric": best_metric, "best_epoch": best_epoch, "history": history},
            )
            logger.log({f"epoch/{k}": v for k, v in record.items()}, step=(epoch + 1) * steps_per_epoch)
            logger.info(f"epoch {epoch}: loss={record['train/loss']:.4f} acc={record['train/acc']:.4f} "
                        f"lr={lr_used:.3e} {record['samples_per_s']:.1f} shapes/s"
                        + (f" | {eval_line}" if eval_line else "") + (" [best]" if is_best else ""))
        du.barrier()
    return best_metric, best_epoch, history, end_epoch == args.epochs


def _final_evaluation(ctx: dict[str, Any], test_set: Dataset, best_metric: float, best_epoch: int,
                      history: list[dict[str, Any]]) -> dict[str, Any]:
    """Evaluate the kept checkpoint on test through the --eval code path; write results.json (rank 0)."""
    args, device, logger = ctx["args"], ctx["device"], ctx["logger"]
    run_dir = ctx["ckpt_dir"].parent
    best_path = ctx["ckpt_dir"] / "partseg_best.pth"
    model, model_args, class_choice = load_finetuned(best_path, None, args.class_choice, args.dropout,
                                                      args.edgeconv)
    model.to(device)
    metrics, out = evaluate(model, ctx["test_loader"], device, args.amp, ctx["seg_start_index"],
                            args.label_smoothing, progress=not args.no_progress, desc="test")
    logger.info(f"Kept checkpoint: epoch {best_epoch} (best {args.select_best_on} instance mIoU "
                f"{100 * best_metric:.2f}), {best_path}")
    logger.info(describe_metrics(metrics, "test"))
    logger.info(format_category_table(metrics["restricted"]["per_category"]))
    results = {
        "mode": "train", "checkpoint": str(best_path), "best_epoch": best_epoch,
        "selected_on": args.select_best_on, "selection_metric": "instance_miou (restricted)",
        "selection_value": best_metric, "model_args": model_args, "class_choice": class_choice,
        "data": data_kind(args.data_root), "metric_note": METRIC_NOTE, "test": metrics,
        "history": history,
    }
    if "test_at_init" in ctx:
        results["test_at_init"] = ctx["test_at_init"]
    if args.plot:
        results["plot"] = plot_examples(test_set, out, run_dir / PLOT_FILE, args.plot_shapes,
                                        f"{args.exp_name}, epoch {best_epoch}: test shapes")
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2) + "\n")
    logger.log(flat_metrics(metrics, "final_test"), step=args.epochs * ctx["steps_per_epoch"])
    return results


if __name__ == "__main__":
    main()
