"""ShapeNetPart part segmentation: fine-tune a (CrossPoint-pretrained) DGCNN, report instance / class mIoU.

    python train_partseg.py --exp_name dgcnn_partseg --pretrained_path runs/crosspoint_dgcnn_seg   # paper settings
    python train_partseg.py --eval --model_path runs/dgcnn_partseg/checkpoints/partseg_best.pth

``--pretrained_path`` takes a part-segmentation *pretraining* file (the published one, or this project's
``train_crossmodal.py --model dgcnn_seg`` run directory or ``point_encoder_best.pth``), or nothing (from
scratch); exactly the segmentation head (conv7..conv11) must be new. ``--eval --model_path`` takes a
*fine-tuned* model (with the head). ``--preset tiny|small`` for CPU-sized runs; torchrun for several GPUs
(``--batch_size`` is the global batch); ``--resume runs/<exp_name>`` continues a run.

The kept checkpoint is chosen on a seeded, per-category stratified ``--val_fraction`` of train+val (the
model trains on the rest); ``--select_best_on test`` is the original's rule (all of train+val; the last
epoch with the best test instance mIoU of the unrestricted argmax). Reported: the kept checkpoint on test
(metrics: metrics/partseg.py). Output under ``<output_dir>/<exp_name>/`` (util/run.py), plus ``results.json``
(``results_eval.json`` for ``--eval``) and ``partseg_test_examples.png`` (``--plot``).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from datasets.shapenet_part import ShapeNetPart
from datasets.provenance import data_kind
from models.dgcnn import DGCNNPartSeg
from models.losses import smoothed_cross_entropy
from models.sync_bn import convert_sync_batchnorm
from util import distributed
from util.checkpoint import CheckpointError, WeightsMeta, load_with_new_head, summarize_keys
from util.fileio import atomic_write_text
from util.logger import Logger
from datasets.tables import SHAPENET_PART_ALIASES, SHAPENET_PART_CATEGORIES as CATEGORIES
from metrics.partseg_iou import format_category_table
from evaluation.plots import plot_partseg_examples
from metrics.partseg import METRIC_NOTE, PartSegEvaluator, describe_metrics, flat_metrics, model_input
from util.optim import backward_step, build_optimizer
from util.presets import PARTSEG_K, PUBLISHED_EMB_DIMS, add_preset_argument, parse_with_preset
from util.run import (AT_LEAST_0, AT_LEAST_1, FRACTION, NON_NEGATIVE, PROBABILITY, Run, add_run_arguments, check_args,
                      check_batch, check_points_for_k, epoch_means, every_n_epochs, open_process, eval_run_dir,
                      write_eval_results)
from util.device import autocast_context, make_grad_scaler
from util.epoch import EpochMeter
from util.loaders import eval_loader, stratified_split
from util.weights import PARTSEG_HEAD_PREFIXES, build_partseg, load_partseg, partseg_init

DEFAULT_NAME = "dgcnn_partseg"  # run name without --exp_name (--eval: "dgcnn_partseg_eval")
PROG = "train_partseg.py"
HEAD_PREFIXES = ("conv7.", "conv8.", "conv9.", "conv10.", "conv11.")
PLOT_FILE = "partseg_test_examples.png"
# Config keys that fix the shapes of the saved model: resuming with other values is refused.
MODEL_SETTINGS = ("model_args", "class_choice")


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface; defaults are the published fine-tuning settings (``--preset paper``)."""
    p = argparse.ArgumentParser(
        prog=PROG, description="ShapeNetPart part segmentation with DGCNN (CrossPoint fine-tuning and evaluation).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_preset_argument(p, "partseg")
    add_run_arguments(p, default_name="dgcnn_partseg ('dgcnn_partseg_eval' with --eval)",
                      data_help="data root with shapenet_part_seg_hdf5_data/",
                      num_workers_help="DataLoader workers (original: 8)")
    g = p.add_argument_group("model and weights")
    g.add_argument("--k", type=int, default=None,
                   help=f"DGCNN neighbours (paper fine-tuning: {PARTSEG_K}; with --eval the checkpoint's value)")
    g.add_argument("--emb_dims", type=int, default=None,
                   help=f"global feature size (paper: {PUBLISHED_EMB_DIMS}; default: read from the loaded weights)")
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

    g = p.add_argument_group("best-checkpoint selection and evaluation")
    g.add_argument("--select_best_on", type=str, default="val", choices=["val", "test"],
                   help="val: train on train+val minus a held-out --val_fraction and keep the epoch with the "
                        "best held-out instance mIoU (argmax restricted to each shape's category); test: the "
                        "original's rule, which selects on the test set: train on all of train+val and keep the "
                        "last epoch with the best test instance mIoU of the unrestricted argmax over all parts")
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
    return p


def validate(args: argparse.Namespace, world_size: int) -> None:
    """Every flag checked before anything is written (messages name the flag)."""
    check_args(PROG, args, {
        "test_batch_size": AT_LEAST_1, "eval_every": AT_LEAST_1, "plot_shapes": AT_LEAST_1, "test_every": AT_LEAST_0,
        "momentum": NON_NEGATIVE, "eta_min": NON_NEGATIVE, "dropout": PROBABILITY, "label_smoothing": PROBABILITY,
        "val_fraction": FRACTION})
    check_points_for_k(PROG, args.num_points, args.k if args.k is not None else PARTSEG_K)
    if args.eval:
        if not args.model_path:
            raise SystemExit(f"{PROG}: --eval needs --model_path (a fine-tuned partseg_best.pth).")
        return
    check_batch(PROG, args.batch_size, world_size, "the BatchNorm of the category branch")


def build_datasets(args: argparse.Namespace) -> tuple[Dataset, Dataset | None, ShapeNetPart, ShapeNetPart]:
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


def make_evaluator(args: argparse.Namespace, device: torch.device, seg_start_index: int) -> PartSegEvaluator:
    """The test/selection evaluator; its loss is the training loss (label-smoothed cross-entropy)."""
    return PartSegEvaluator(device, args.amp, seg_start_index,
                            functools.partial(smoothed_cross_entropy, eps=args.label_smoothing))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Fine-tune (or with --eval only evaluate). Returns the results dict written to results(_eval).json."""
    args = parse_with_preset(build_parser(), "partseg", argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.class_choice = SHAPENET_PART_ALIASES.get(args.class_choice, args.class_choice)
    with open_process(PROG, args, validate) as (info, device):
        if args.eval:  # the main rank evaluates, the others wait
            results = evaluate_only(args, device) if info.is_main else {}
            distributed.barrier()
            return results
        with Run(PROG, args, info, device, default_name=DEFAULT_NAME) as run:
            results = run.nothing_to_do() if run.already_finished else finetune(args, run)
        return distributed.broadcast_object(results)


def evaluate_only(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """--eval: the results of --model_path on the test split, written to
    ``<output_dir>/<exp_name or dgcnn_partseg_eval>/results_eval.json``."""
    run_dir = eval_run_dir(args, DEFAULT_NAME)
    path = Path(args.model_path)
    model, model_args, class_choice = load_partseg(PROG, path, args.k, args.class_choice, args.dropout, args.edgeconv)
    model.to(device)
    test = ShapeNetPart(args.data_root, "test", num_points=args.num_points, class_choice=class_choice)
    loader = eval_loader(test, args.test_batch_size, device, args.num_workers)
    with Logger(run_dir, wandb_mode=args.wandb, config=vars(args), project=args.wandb_project,
                run_name=run_dir.name) as logger:
        logger.info(f"Evaluating {path} ({model_args}, class_choice={class_choice}) on {len(test)} test shapes, "
                    f"device {device}")
        metrics, out = make_evaluator(args, device, test.seg_start_index).evaluate(
            model, loader, progress=not args.no_progress, desc="test")
        logger.info(describe_metrics(metrics, "test"))
        logger.info(format_category_table(metrics["restricted"]["per_category"]))
    results = {"mode": "eval", "checkpoint": str(path), "model_args": model_args, "class_choice": class_choice,
               "data": data_kind(args.data_root), "metric_note": METRIC_NOTE, "test": metrics}
    if args.plot:
        results["plot"] = plot_partseg_examples(test, out, run_dir / PLOT_FILE, args.plot_shapes, f"{path.name}: test shapes")
    write_eval_results(run_dir, results)
    return results


def build_model_with_init(args: argparse.Namespace, run: Run,
                          num_parts: int) -> tuple[DGCNNPartSeg, dict, str, list[str]]:
    """The part-segmentation model with its initial weights (--pretrained_path or scratch), on the run's device.
    Returns (model, model_args, the weights' source, log lines describing them)."""
    init_sd, init_source, model_args = partseg_init(PROG, args.pretrained_path, args.k, args.emb_dims, args.dropout,
                                                    warn=run.is_main)
    model_args["num_parts"] = num_parts
    model = build_partseg(model_args, args.edgeconv)
    try:
        new_keys = (load_with_new_head(model, init_sd, PARTSEG_HEAD_PREFIXES, init_source) if init_sd is not None
                    else None)
    except (CheckpointError, ValueError) as err:
        raise SystemExit(f"{PROG}: --pretrained_path {err}") from None
    lines = [f"Initial weights: {init_source}" + (
        "" if new_keys is None else
        f"; new (randomly initialised) keys: {summarize_keys(new_keys) if new_keys else 'none'}")]
    if new_keys:
        lines.append("New keys: " + ", ".join(new_keys))
    return model.to(run.device), model_args, init_source, lines


def finetune(args: argparse.Namespace, run: Run) -> dict[str, Any]:
    """Data, model and initial weights, optimizer and schedule; optional evaluation at init; the epoch loop
    (train, schedule, evaluate, keep the best, log, checkpoint); the final test evaluation of the kept checkpoint.
    Returns the results written to results.json (main rank; {} elsewhere or when the run stopped early)."""
    device = run.device
    train_set, val_set, test_set, trainval = build_datasets(args)
    # Differs from the original: drop_last is always on (the original kept a last partial batch when the
    # set had < 100 shapes); a batch of one shape would break the BatchNorm of the category branch.
    train_loader = run.train_loader(train_set, args.batch_size, args.num_workers)
    test_loader = eval_loader(test_set, args.test_batch_size, device, args.num_workers)
    select_loader = (eval_loader(val_set, args.test_batch_size, device, args.num_workers) if val_set is not None
                     else test_loader)
    model, model_args, init_source, init_lines = build_model_with_init(args, run, trainval.seg_num_all)
    # Differs from the original: --lr is the learning rate itself (0.1); the original took --lr 0.001 and
    # multiplied it by 100 for SGD. Parameters without gradients (inv_head) are not passed (no effect).
    optimizer = build_optimizer(args.optimizer, model, args.lr, args.wd, args.momentum)
    if args.scheduler == "cos":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs, eta_min=args.eta_min)
    else:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.5)
    if args.sync_bn and run.info.is_distributed:
        model = convert_sync_batchnorm(model)  # BatchNorm (and fast EdgeConv) statistics over all ranks
    net = distributed.wrap_ddp(model, device)
    scaler, seg_start = make_grad_scaler(device, args.amp), trainval.seg_start_index
    run.start_or_resume({"model": model}, optimizer, scheduler, scaler, model_settings=MODEL_SETTINGS,
                        config_extra={"model_args": model_args, "seg_start_index": seg_start,
                                      "init_weights": init_source,
                                      "train_shapes": len(train_set),
                                      "val_shapes": len(val_set) if val_set is not None else 0,
                                      "test_shapes": len(test_set), "data": data_kind(args.data_root)})
    run.logger.info(f"Part segmentation: DGCNNPartSeg {model_args}, {len(train_set)} train / "
                    f"{run.config['val_shapes']} val / {len(test_set)} test shapes"
                    f"{'' if args.class_choice is None else f' ({args.class_choice})'}, {len(train_loader)} "
                    f"steps/epoch x {run.info.world_size} process(es), device {device}, run dir {run.run_dir}")
    for line in init_lines:
        run.logger.info(line)
    evaluator = make_evaluator(args, device, seg_start)
    test_at_init = evaluate_at_init(args, run, evaluator, model, test_loader)
    for epoch in run.remaining_epochs():
        net.train()
        stats = train_one_epoch(net, train_loader, optimizer, scaler, run.epoch_meter(train_loader, epoch), args,
                                seg_start, next(model.parameters()).dtype)
        step_schedule(args.scheduler, scheduler, optimizer)
        record = epoch_means(epoch, stats, device, prefix="train/")
        metric, eval_line = evaluate_epoch(args, run, evaluator, model, select_loader, test_loader, epoch, record)
        # As the original, a later epoch with an equal score replaces the kept one (>=).
        is_best = run.update_best(epoch, metric, ties_replace=True)
        run.log_epoch(record, f"epoch {epoch}: loss={record['train/loss']:.4f} acc={record['train/acc']:.4f} "
                              f"lr={record['lr']:.3e} {record['samples_per_s']:.1f} shapes/s{eval_line}", is_best)
        meta = WeightsMeta(model="dgcnn_partseg", kind="partseg", model_args=model_args, epoch=epoch, source=PROG,
                           config=run.config,
                           extra={"class_choice": args.class_choice, "seg_start_index": seg_start,
                                  "metrics": {k: v for k, v in record.items() if k.startswith(("val/", "test/"))}})
        run.save_checkpoint(epoch, is_best, {"partseg": (model, meta)})
    results = final_evaluation(args, run, evaluator, test_set, test_loader, test_at_init) if (
        run.finished and run.is_main) else {}
    distributed.barrier()
    return results


def train_one_epoch(net: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler | None, meter: EpochMeter, args: argparse.Namespace,
                    seg_start_index: int, dtype: torch.dtype) -> dict[str, float]:
    """One fine-tuning epoch: per batch, the part logits, the label-smoothed cross-entropy of the original,
    backward and an optimizer step. ``seg_start_index`` is subtracted from the global part ids (the chosen
    category's first part with --class_choice, else 0), as in the original; ``dtype``: the model's parameter
    dtype. Returns the meter's epoch means (loss, acc, lr, samples_per_s, ...)."""
    device = meter.device
    params = [p for group in optimizer.param_groups for p in group["params"]]
    with meter:
        for step, (points, category, part_ids) in enumerate(loader):  # (B, N, 3), (B,), (B, N)
            if step == meter.n_steps:  # --max_steps_per_epoch
                break
            optimizer.zero_grad(set_to_none=True)
            x, one_hot = model_input(points, category, device, dtype)  # (B, 3, N), (B, 16)
            target = part_ids.to(device, non_blocking=True) - seg_start_index  # (B, N)
            with autocast_context(device, args.amp):
                logits = net(x, one_hot)  # (B, P, N)
            loss = smoothed_cross_entropy(logits, target, eps=args.label_smoothing)
            # Differs from the original: training logs loss and per-point accuracy, not the training-set mIoU.
            acc = (logits.detach().argmax(dim=1) == target).float().mean()
            meter.update(step, loss, {"acc": acc}, batch_size=points.shape[0])
            backward_step(loss, optimizer, params, args.grad_clip, scaler)  # backward, clip, step (fp16: scaled)
            if meter.stop:  # a stop signal: end after this step's update
                break
    return meter.stats


def step_schedule(kind: str, scheduler: Any, optimizer: torch.optim.Optimizer) -> None:
    """Cosine: one step per epoch. Step: the original's x0.5 every 20 epochs, never below 1e-5."""
    if kind == "cos":
        scheduler.step()
        return
    if optimizer.param_groups[0]["lr"] > 1e-5:
        scheduler.step()
    for group in optimizer.param_groups:
        group["lr"] = max(group["lr"], 1e-5)


def evaluate_at_init(args: argparse.Namespace, run: Run, evaluator: PartSegEvaluator, model: nn.Module,
                     test_loader: DataLoader) -> dict | None:
    """--eval_at_init on a new run (main rank): the test metrics before fine-tuning, logged; else None."""
    if not (args.eval_at_init and run.resume_path is None and run.is_main):
        return None
    test_at_init, _ = evaluator.evaluate(model, test_loader, progress=not args.no_progress, desc="test (init)")
    run.logger.info(describe_metrics(test_at_init, "test at initialisation"))
    run.logger.log(flat_metrics(test_at_init, "test_init"), step=0)
    return test_at_init


def evaluate_epoch(args: argparse.Namespace, run: Run, evaluator: PartSegEvaluator, model: nn.Module,
                   select_loader: DataLoader, test_loader: DataLoader, epoch: int,
                   record: dict[str, Any]) -> tuple[float | None, str]:
    """The selection split's evaluation when due (main rank), and with --select_best_on val the test split's
    per --test_every; their metrics go into ``record``. Returns (selection metric or None, log text)."""
    split = "val" if args.select_best_on == "val" else "test"
    metric, eval_line = None, ""
    if run.is_main and every_n_epochs(epoch, args.eval_every, args.epochs):
        # Differs from the original DDP script (which averaged per-rank mIoUs): evaluation runs on rank 0
        # over the whole split, so the numbers do not depend on the number of processes.
        metrics, _ = evaluator.evaluate(model, select_loader, progress=not args.no_progress, desc=split)
        record.update(flat_metrics(metrics, split))
        # val: the held-out instance mIoU of the category-restricted argmax; test: the original's rule, the
        # test instance mIoU of the unrestricted argmax over all parts.
        metric = metrics["restricted" if split == "val" else "unrestricted"]["instance_miou"]
        eval_line = " | " + describe_metrics(metrics, split)
    if run.is_main and split == "val" and args.test_every and every_n_epochs(epoch, args.test_every, args.epochs):
        test_metrics, _ = evaluator.evaluate(model, test_loader, progress=not args.no_progress, desc="test")
        record.update(flat_metrics(test_metrics, "test"))
    return metric, eval_line


def final_evaluation(args: argparse.Namespace, run: Run, evaluator: PartSegEvaluator, test_set: ShapeNetPart,
                     test_loader: DataLoader, test_at_init: dict | None) -> dict[str, Any]:
    """Evaluate the kept checkpoint on test through the --eval code path; write results.json (rank 0)."""
    best_path = run.ckpt_dir / "partseg_best.pth"
    model, model_args, class_choice = load_partseg(PROG, best_path, None, args.class_choice, args.dropout,
                                                   args.edgeconv)
    metrics, out = evaluator.evaluate(model.to(run.device), test_loader, progress=not args.no_progress, desc="test")
    rule = ("instance_miou (restricted), held-out val" if args.select_best_on == "val"
            else "instance_miou (unrestricted, as the original), test")
    run.logger.info(f"Kept checkpoint: epoch {run.best_epoch} (best {rule}: {100 * run.best_metric:.2f}), "
                    f"{best_path}")
    run.logger.info(describe_metrics(metrics, "test"))
    run.logger.info(format_category_table(metrics["restricted"]["per_category"]))
    results = {
        "mode": "train", "checkpoint": str(best_path), "best_epoch": run.best_epoch,
        "selected_on": args.select_best_on, "selection_metric": rule, "selection_value": run.best_metric,
        "model_args": model_args, "class_choice": class_choice, "data": data_kind(args.data_root),
        "metric_note": METRIC_NOTE, "test": metrics, "history": run.history,
    }
    if test_at_init is not None:
        results["test_at_init"] = test_at_init
    if args.plot:
        results["plot"] = plot_partseg_examples(test_set, out, run.run_dir / PLOT_FILE, args.plot_shapes,
                                        f"{args.exp_name}, epoch {run.best_epoch}: test shapes")
    atomic_write_text(run.run_dir / "results.json", json.dumps(results, indent=2) + "\n")
    run.logger.log(flat_metrics(metrics, "final_test"), step=args.epochs * run.steps_per_epoch)
    return results


if __name__ == "__main__":
    main()
