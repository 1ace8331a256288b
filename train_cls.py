"""Classification fine-tuning of a (CrossPoint-pretrained) point encoder: ModelNet40, ScanObjectNN, custom.

    python train_cls.py --pretrained_path runs/crosspoint_dgcnn_cls --dataset modelnet40
    python train_cls.py --pretrained_path checkpoints/official/dgcnn_cls_best.pth --dataset scanobjectnn \
        --variant pb_t50_rs
    python train_cls.py --dataset scanobjectnn --variant obj_bg            # from scratch
    python train_cls.py --eval --model_path runs/dgcnn_cls/checkpoints/classifier_best.pth

The classifier is the DGCNN paper's (WangYueFt/dgcnn ``main.py``): the encoder, then a dropout MLP
2 * emb_dims -> 512 -> 256 -> classes. ``--recipe`` sets the optimisation defaults (util/presets.py RECIPES,
each value with its source line; an explicit flag still wins, ``--preset tiny|small`` scales the epochs and
the warm-up):

- ``dgcnn`` (default): the DGCNN reference's, label-smoothed cross-entropy (0.2), SGD lr 0.1, momentum 0.9,
  wd 1e-4, cosine to 1e-3 stepped at the start of each epoch (epoch 0 trains at the once-stepped lr, the last
  at 1e-3; ``--lr_order plain`` trains epoch e at step e), per-axis scale and shift plus point shuffling, 1024
  points, 250 epochs, batch 32.
- ``pointmae``: Point-MAE's fine-tuning protocol (Pang-Yatian/Point-MAE ``cfgs/finetune_*.yaml``, its builder
  and runner): cross-entropy, AdamW lr 5e-4, wd 0.05 (none on 1-D parameters and biases), 10 warm-up epochs
  from 1e-6 then cosine to 1e-6 (timm's schedule, stepped after each epoch), 300 epochs, batch 32, gradient
  norm clipped at 10, its scale-and-translate augmentation, 2048 points on ScanObjectNN and 1024 on ModelNet40.

``--pretrained_path`` (a pretraining run directory, its ``point_encoder_best.pth``, or the published
``dgcnn_cls_best.pth``) loads the encoder strictly, with exactly the head (linear1..linear3) reported as new.

Selection: the kept checkpoint is chosen on a seeded, stratified ``--val_fraction`` of the training split
(the model trains on the rest) and the test split is scored once, at the end. ``--select_best_on test`` is
both recipes' rule for their reported number (keep the epoch with the best test accuracy; it selects on the
test set and is labelled so; on equal accuracy DGCNN keeps the later epoch, Point-MAE the earlier). No
test-time voting. Output: util/run.py's run directory plus ``results.json`` (``results_eval.json`` for
``--eval``) with overall accuracy, mean class accuracy, per-class accuracy and the confusion matrix, and
``confusion_test.png`` (``--plot``); ``config.json`` records the recipe, every resolved value and
``recipe_overrides`` (the explicit flags that changed the recipe's values).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from datasets.classification import (CLASSIFICATION_DATASETS, SCANOBJECTNN_VARIANTS, VARIANT_HELP,
                                     AugmentedClassification, ClassificationData, check_variant)
from datasets.provenance import data_kind
from datasets.transforms import CLASSIFICATION_AUGMENTATIONS
from models import DGCNN_K
from models.losses import smoothed_cross_entropy
from models.sync_bn import convert_sync_batchnorm
from util import distributed
from util.checkpoint import WeightsMeta, summarize_keys
from metrics.classification import ClsEvaluator, describe, to_model_input
from util.fileio import atomic_write_text
from util.logger import Logger
from util.optim import OPTIMIZERS, backward_step, build_optimizer
from util.presets import (DEFAULT_RECIPE, PUBLISHED_EMB_DIMS, RECIPE_FLAGS, RECIPE_NAMES, RECIPES,
                          add_preset_argument, parse_with_recipe, recipe_defaults)
from util.run import (AT_LEAST_0, AT_LEAST_1, FRACTION, NON_NEGATIVE, PROBABILITY, Run, add_run_arguments, check_args,
                      check_batch, check_points_for_k, epoch_means, every_n_epochs, open_process, eval_run_dir,
                      write_eval_results)
from util.device import autocast_context, make_grad_scaler
from util.epoch import EpochMeter
from util.loaders import eval_loader, stratified_split
from util.schedules import LR_ORDERS, SCHEDULES, build_schedule
from util.weights import build_classifier_with_init, classifier_init, load_classifier

DEFAULT_NAME = "dgcnn_cls"  # run name without --exp_name (--eval: "dgcnn_cls_eval")
PROG = "train_cls.py"
PLOT_FILE = "confusion_test.png"
MODEL_SETTINGS = ("model", "model_args", "dataset", "variant")


def by_recipe(name: str) -> str:
    """``"dgcnn: X; pointmae: Y"``, the value of ``name`` in each recipe (for the help strings)."""
    return "; ".join(f"{recipe}: {RECIPES[recipe][name]}" for recipe in RECIPE_NAMES)


def recipe_help() -> str:
    """The help of --recipe: the sources, what is not reproduced and each recipe's reported-number rule."""
    return ("the defaults of every optimisation flag marked 'recipe' (an explicit flag still wins; --preset paper = "
            "the recipe's published values; tiny/small scale the epochs and the warm-up). dgcnn: WangYueFt/dgcnn "
            "pytorch/main.py. pointmae: Pang-Yatian/Point-MAE cfgs/finetune_scan_*.yaml, finetune_modelnet.yaml, "
            "tools/builder.py, tools/runner_finetune.py; not reproduced: "
            f"{RECIPES['pointmae']['not_applicable']}. Both recipes report the best test accuracy over the epochs "
            "(--select_best_on test, which selects on the test set); this project's default keeps the epoch with "
            "the best held-out accuracy (--select_best_on val). Point-MAE's voting is not reproduced")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface; its defaults are recipe ``dgcnn`` (``parse_with_recipe`` applies the
    ``--recipe``, ``--dataset`` and ``--preset`` chosen)."""
    p = argparse.ArgumentParser(prog=PROG, description="Classification fine-tuning (ModelNet40, ScanObjectNN, "
                                "custom) of a CrossPoint-pretrained or random point encoder.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_preset_argument(p, "cls")
    p.add_argument("--recipe", choices=RECIPE_NAMES, default=DEFAULT_RECIPE, help=recipe_help())
    add_run_arguments(p, default_name="dgcnn_cls ('dgcnn_cls_eval' with --eval)", data_help="data root",
                      num_workers_help="DataLoader workers (DGCNN reference: 8)")
    grad_clip = next(action for action in p._actions if action.dest == "grad_clip")
    grad_clip.help = f"recipe: clip the gradients' global L2 norm ({by_recipe('grad_clip')}: no clipping)"
    g = p.add_argument_group("model and weights")
    g.add_argument("--model", choices=["dgcnn", "pointnet"], default=None,
                   help="encoder (default: the pretrained file's, else dgcnn)")
    g.add_argument("--k", type=int, default=None, help=f"DGCNN neighbours (DGCNN paper: {DGCNN_K})")
    g.add_argument("--emb_dims", type=int, default=None,
                   help=f"embedding width (DGCNN paper: {PUBLISHED_EMB_DIMS}; default: the pretrained file's)")
    g.add_argument("--dropout", type=float, default=0.5, help="dropout of the head (DGCNN paper and Point-MAE's "
                                                                "head: 0.5)")
    g.add_argument("--edgeconv", choices=["fast", "plain"], default="fast", help="EdgeConv implementation")
    g.add_argument("--pretrained_path", default="",
                   help="encoder to fine-tune: a pretraining run directory, point_encoder_*.pth or the published "
                        "dgcnn_cls_best.pth; empty: from scratch")
    g.add_argument("--eval", action="store_true", help="only evaluate --model_path on the test split")
    g.add_argument("--model_path", default="", help="fine-tuned classifier_best.pth for --eval")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=CLASSIFICATION_DATASETS, default="modelnet40", help="classification set")
    g.add_argument("--variant", choices=SCANOBJECTNN_VARIANTS, default=None, help=VARIANT_HELP)
    g.add_argument("--num_points", type=int, default=1024,
                   help="recipe: the first N points of each cloud (dgcnn: 1024; pointmae: 2048 on ScanObjectNN, "
                        "1024 on ModelNet40; custom: 1024)")
    g.add_argument("--augmentation", choices=sorted(CLASSIFICATION_AUGMENTATIONS), default="dgcnn",
                   help="recipe: training augmentation (dgcnn: per-axis scale U(2/3, 3/2), shift U(-0.2, 0.2), "
                        "shuffled points; pointmae: shuffled points, then Point-MAE's PointcloudScaleAndTranslate "
                        "with the same ranges in float32)")
    g.add_argument("--no_augment", action="store_true", help="no training augmentation")
    add_optimisation_arguments(p)
    g = p.add_argument_group("selection and evaluation")
    g.add_argument("--select_best_on", choices=["val", "test"], default="val",
                   help="val (this project's): keep the epoch with the best accuracy on a held-out --val_fraction "
                        "of the training split; test: both recipes' rule for their reported number, the best test "
                        "accuracy (selects on the test set)")
    g.add_argument("--val_fraction", type=float, default=0.1,
                   help="stratified, seeded fraction of the training split held out for selection")
    g.add_argument("--eval_every", type=int, default=1, help="evaluate the selection split every N epochs")
    g.add_argument("--plot", action="store_true", help=f"write {PLOT_FILE}, the row-normalized test confusion matrix")
    return p


def add_optimisation_arguments(p: argparse.ArgumentParser) -> None:
    """The recipe's optimisation flags (defaults: recipe dgcnn; each help names both recipes' values)."""
    dgcnn = RECIPES[DEFAULT_RECIPE]
    g = p.add_argument_group("optimisation (defaults: --recipe; --grad_clip is in 'run')")
    g.add_argument("--epochs", type=int, default=dgcnn["epochs"], help=f"recipe: epochs ({by_recipe('epochs')})")
    g.add_argument("--batch_size", type=int, default=dgcnn["batch_size"],
                   help=f"recipe: global training batch ({by_recipe('batch_size')})")
    g.add_argument("--test_batch_size", type=int, default=dgcnn["test_batch_size"],
                   help=f"recipe: evaluation batch ({by_recipe('test_batch_size')})")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=dgcnn["optimizer"],
                   help=f"recipe: optimizer ({by_recipe('optimizer')})")
    g.add_argument("--lr", type=float, default=dgcnn["lr"],
                   help=f"recipe: initial (peak) learning rate ({by_recipe('lr')}; dgcnn's is the reference's "
                        "--lr 0.001 x 100 for SGD; use 0.001 with --optimizer adam)")
    g.add_argument("--momentum", type=float, default=dgcnn["momentum"],
                   help=f"recipe: SGD momentum ({by_recipe('momentum')}: AdamW has none)")
    g.add_argument("--wd", type=float, default=dgcnn["wd"], help=f"recipe: weight decay ({by_recipe('wd')})")
    g.add_argument("--no_decay_1d", action=argparse.BooleanOptionalAction, default=dgcnn["no_decay_1d"],
                   help="recipe: no weight decay on 1-D parameters (norm weights), biases and *token* parameters, "
                        f"as Point-MAE's add_weight_decay ({by_recipe('no_decay_1d')})")
    g.add_argument("--schedule", choices=SCHEDULES, default=dgcnn["schedule"],
                   help="recipe: cosine (torch's CosineAnnealingLR to --eta_min) or warmup_cosine (timm's "
                        f"CosineLRScheduler with a linear warm-up from --warmup_lr) ({by_recipe('schedule')})")
    g.add_argument("--lr_order", choices=LR_ORDERS, default=dgcnn["lr_order"],
                   help="recipe: reference = each recipe's published stepping (dgcnn: scheduler.step() at the start "
                        "of each epoch, so epoch 0 trains at the once-stepped lr and the last at --eta_min; pointmae: "
                        "scheduler.step(epoch) after each epoch, epochs 0 and 1 at --warmup_lr); plain = epoch e "
                        "trains at the schedule's step e (this project's order before issue 22)")
    g.add_argument("--warmup_epochs", type=int, default=dgcnn["warmup_epochs"],
                   help=f"recipe: linear warm-up epochs of warmup_cosine ({by_recipe('warmup_epochs')}; "
                        "--preset tiny/small scale Point-MAE's 10 of 300 to their epochs)")
    g.add_argument("--warmup_lr", type=float, default=dgcnn["warmup_lr"],
                   help=f"recipe: learning rate the warm-up starts at ({by_recipe('warmup_lr')})")
    g.add_argument("--eta_min", type=float, default=dgcnn["eta_min"],
                   help=f"recipe: final learning rate of the cosine ({by_recipe('eta_min')})")
    g.add_argument("--label_smoothing", type=float, default=dgcnn["label_smoothing"],
                   help="recipe: label-smoothing eps of the cross-entropy (dgcnn: 0.2, the reference's cal_loss; "
                        "pointmae: 0.0, nn.CrossEntropyLoss)")


def validate(args: argparse.Namespace, world_size: int) -> None:
    """Every flag checked before anything is written (messages name the flag); resolves ``args.variant``."""
    check_args(PROG, args, {"test_batch_size": AT_LEAST_1, "eval_every": AT_LEAST_1, "momentum": NON_NEGATIVE,
                            "eta_min": NON_NEGATIVE, "dropout": PROBABILITY, "label_smoothing": PROBABILITY,
                            "val_fraction": FRACTION, "warmup_epochs": AT_LEAST_0, "warmup_lr": NON_NEGATIVE})
    if args.optimizer == "sgd" and args.momentum is None:
        raise SystemExit(f"{PROG}: --optimizer sgd needs --momentum (recipe {args.recipe} sets none; DGCNN's is 0.9).")
    if args.schedule == "cosine" and args.warmup_epochs:
        raise SystemExit(f"{PROG}: --warmup_epochs {args.warmup_epochs} needs --schedule warmup_cosine (the cosine "
                         "schedule has no warm-up).")
    if args.warmup_epochs and args.warmup_epochs >= args.epochs:
        raise SystemExit(f"{PROG}: --warmup_epochs {args.warmup_epochs} must be fewer than --epochs {args.epochs}.")
    check_points_for_k(PROG, args.num_points, args.k if args.k is not None else DGCNN_K)
    args.variant = check_variant(PROG, args.dataset, args.variant)
    if args.eval and not args.model_path:
        raise SystemExit(f"{PROG}: --eval needs --model_path (a fine-tuned classifier_best.pth).")
    if not args.eval:
        check_batch(PROG, args.batch_size, world_size, "BatchNorm")


def splits(args: argparse.Namespace) -> tuple[Dataset, Dataset | None, Dataset]:
    """(train, held-out val or None, test): val is a stratified part of the training split (not augmented)."""
    data = ClassificationData(args.dataset, args.data_root, args.variant, args.num_points)
    train, test = data.load("train"), data.load("test")
    aug = train if args.no_augment else AugmentedClassification(train, args.augmentation)
    if args.select_best_on == "test":
        return aug, None, test
    # Differs from the DGCNN reference: it kept the epoch with the best test accuracy.
    fit_idx, val_idx = stratified_split(train.labels, args.val_fraction, args.seed)
    return Subset(aug, fit_idx.tolist()), Subset(train, val_idx.tolist()), test


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Fine-tune (or with --eval only evaluate). Returns the results written to results(_eval).json."""
    args = parse_with_recipe(build_parser(), argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    with open_process(PROG, args, validate) as (info, device):
        if args.eval:  # the main rank evaluates, the others wait
            results = evaluate_only(args, device) if info.is_main else {}
            distributed.barrier()
            return results
        with Run(PROG, args, info, device, default_name=DEFAULT_NAME) as run:
            results = run.nothing_to_do() if run.already_finished else finetune(args, run)
        return distributed.broadcast_object(results)


def evaluator(args: argparse.Namespace, device: torch.device, test: Dataset, num_classes: int) -> ClsEvaluator:
    return ClsEvaluator(device, args.amp, functools.partial(smoothed_cross_entropy, eps=args.label_smoothing),
                        num_classes, getattr(test, "class_names", None))


def report(metrics: dict[str, Any], out: dict, test: Dataset, args: argparse.Namespace, path: Path, title: str,
           logger: Logger) -> dict[str, Any]:
    """Log the test metrics, write the confusion-matrix picture with --plot; returns result fields."""
    logger.info(describe(metrics, "test"))
    logger.info("per-class accuracy: " + ", ".join(f"{c} {100 * a:.1f}" for c, a in
                                                   metrics["per_class_accuracy"].items()))
    fields: dict[str, Any] = {"data": data_kind(args.data_root), "dataset": args.dataset, "test": metrics,
                              "variant": args.variant if args.dataset == "scanobjectnn" else None,
                              "voting": "none (one pass, no test-time augmentation)"}
    if args.plot:
        from evaluation.plots import plot_confusion

        plot_confusion(out["target"], out["pred"], getattr(test, "class_names", None), path, title=title)
        fields["plot"] = str(path)
    return fields


def evaluate_only(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """--eval: the results of --model_path on the test split, written to
    ``<output_dir>/<exp_name or dgcnn_cls_eval>/results_eval.json``."""
    run_dir = eval_run_dir(args, DEFAULT_NAME)
    model, name, model_args = load_classifier(PROG, Path(args.model_path), args.k, args.dropout, args.edgeconv)
    test = ClassificationData(args.dataset, args.data_root, args.variant, args.num_points).load("test")
    loader = eval_loader(test, args.test_batch_size, device, args.num_workers)
    with Logger(run_dir, wandb_mode=args.wandb, config=vars(args), project=args.wandb_project) as logger:
        metrics, out = evaluator(args, device, test, model_args["num_classes"]).evaluate(
            model.to(device), loader, progress=not args.no_progress, desc="test")
        results = {"mode": "eval", "checkpoint": args.model_path, "model": name, "model_args": model_args,
                   **report(metrics, out, test, args, run_dir / PLOT_FILE, f"{args.model_path}: test", logger)}
    write_eval_results(run_dir, results)
    return results


def build_model_with_init(args: argparse.Namespace, run: Run,
                          num_classes: int) -> tuple[nn.Module, str, dict, str, str]:
    """The classifier with its initial encoder weights (--pretrained_path or random), on the run's device.
    Returns (model, model name, model_args, the weights' source, their description for the log)."""
    sd, source, name, model_args = classifier_init(PROG, args.pretrained_path, args.model, args.k, args.emb_dims,
                                                   args.dropout, warn=run.is_main)
    model_args["num_classes"] = num_classes
    model, new = build_classifier_with_init(name, num_classes, model_args, args.edgeconv, sd, source)
    note = f"initial weights {source}" + ("" if new is None else f"; new keys: {summarize_keys(new) or 'none'}")
    return model.to(run.device), name, model_args, source, note


def recipe_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe flags whose value differs from what ``--recipe`` with ``--preset`` sets (explicit flags)."""
    defaults = recipe_defaults(args.recipe, args.dataset, args.preset)
    return {name: getattr(args, name) for name in RECIPE_FLAGS if getattr(args, name) != defaults[name]}


def recipe_line(args: argparse.Namespace) -> str:
    """The resolved optimisation settings in one line, for the log."""
    clip = "no clipping" if args.grad_clip is None else f"gradient norm clipped at {args.grad_clip:g}"
    return (f"{args.optimizer} lr {args.lr:g} wd {args.wd:g}{' (not on 1-D/bias)' if args.no_decay_1d else ''}, "
            f"{args.schedule} to {args.eta_min:g} over {args.epochs} epochs ({args.lr_order} order, "
            f"{args.warmup_epochs} warm-up from {args.warmup_lr:g}), {clip}, batch {args.batch_size}, "
            f"{args.num_points} points, label smoothing {args.label_smoothing:g}, augmentation "
            f"{'none' if args.no_augment else args.augmentation}")


def finetune(args: argparse.Namespace, run: Run) -> dict[str, Any]:
    """Data, classifier and initial weights, optimizer and schedule; the epoch loop (train, schedule, evaluate
    the selection split, keep the best, log, checkpoint); one test evaluation of the kept checkpoint.
    Returns the results written to results.json (main rank; {} elsewhere or when the run stopped early)."""
    device = run.device
    train_set, val_set, test_set = splits(args)
    num_classes = len(test_set.class_names) if test_set.class_names else int(test_set.labels.max()) + 1
    model, name, model_args, init_source, init_note = build_model_with_init(args, run, num_classes)
    optimizer = build_optimizer(args.optimizer, model, args.lr, args.wd, args.momentum, no_decay_1d=args.no_decay_1d)
    scheduler = build_schedule(optimizer, args.schedule, args.epochs, args.eta_min, args.warmup_epochs,
                               args.warmup_lr, order=args.lr_order)  # saved and restored with the training state
    loader = run.train_loader(train_set, args.batch_size, args.num_workers)
    if args.sync_bn and run.info.is_distributed:
        model = convert_sync_batchnorm(model)  # BatchNorm (and fast EdgeConv) statistics over all ranks
    net = distributed.wrap_ddp(model, device)
    scaler = make_grad_scaler(device, args.amp)
    run.start_or_resume({"model": model}, optimizer, scheduler, scaler, model_settings=MODEL_SETTINGS,
                        config_extra={"model": name, "model_args": model_args,
                                      "init_weights": init_source, "recipe_overrides": recipe_overrides(args),
                                      "data": data_kind(args.data_root), "train_samples": len(train_set),
                                      "val_samples": len(val_set) if val_set is not None else 0,
                                      "test_samples": len(test_set)})
    run.logger.info(f"Classification fine-tuning (recipe {args.recipe}, {recipe_line(args)}): {name} {model_args} "
                    f"on {args.dataset}, {len(train_set)} train / "
                    f"{run.config['val_samples']} val / {len(test_set)} test, {init_note}")
    split = "val" if args.select_best_on == "val" else "test"
    select_loader = eval_loader(val_set if val_set is not None else test_set, args.test_batch_size, device,
                                args.num_workers)
    test_loader = eval_loader(test_set, args.test_batch_size, device, args.num_workers)
    cls_evaluator = evaluator(args, device, test_set, num_classes)
    for epoch in run.remaining_epochs():
        model.train()
        scheduler.set_epoch(epoch)  # the lr this epoch trains at (the meter reports it as "lr")
        stats = train_one_epoch(net, loader, optimizer, scaler, run.epoch_meter(loader, epoch), args)
        record = epoch_means(epoch, stats, device, prefix="train/")
        metric, line = None, ""
        if run.is_main and every_n_epochs(epoch, args.eval_every, args.epochs):
            metrics, _ = cls_evaluator.evaluate(model, select_loader, progress=not args.no_progress, desc=split)
            record.update({f"{split}/oa": metrics["overall_accuracy"], f"{split}/macc": metrics["mean_class_accuracy"],
                           f"{split}/loss": metrics["loss"]})
            metric, line = metrics["overall_accuracy"], " | " + describe(metrics, split)
        # DGCNN keeps a later epoch of equal accuracy (>=), Point-MAE the earlier one (>).
        is_best = run.update_best(epoch, metric, ties_replace=RECIPES[args.recipe]["ties_replace"])
        run.log_epoch(record, f"epoch {epoch}: loss={record['train/loss']:.4f} acc={record['train/acc']:.4f} "
                              f"lr={record['lr']:.3e} {record['samples_per_s']:.1f} clouds/s{line}", is_best)
        meta = WeightsMeta(model=name, kind="classifier", model_args=model_args, epoch=epoch, source=PROG,
                           config=run.config, extra={"dataset": args.dataset, "variant": args.variant,
                                                     "metrics": {k: v for k, v in record.items() if "/" in k}})
        run.save_checkpoint(epoch, is_best, {"classifier": (model, meta)})
    results = (final_evaluation(args, run, cls_evaluator, test_set, test_loader, split)
               if run.finished and run.is_main else {})
    distributed.barrier()
    return results


def train_one_epoch(net: nn.Module, loader: Any, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                    meter: EpochMeter, args: argparse.Namespace) -> dict[str, float]:
    """One fine-tuning epoch: per batch, the logits, the label-smoothed cross-entropy, backward and an optimizer
    step. Returns the meter's epoch means (loss, acc, lr, samples_per_s, ...)."""
    device = meter.device
    params = [p for group in optimizer.param_groups for p in group["params"]]
    with meter:
        for step, (points, labels) in enumerate(loader):  # (B, N, 3), (B,)
            if step == meter.n_steps:  # --max_steps_per_epoch
                break
            optimizer.zero_grad(set_to_none=True)
            x, y = to_model_input(points, labels, device)  # (B, 3, N), (B,)
            with autocast_context(device, args.amp):
                logits = net(x)  # (B, C)
            loss = smoothed_cross_entropy(logits, y, eps=args.label_smoothing)
            meter.update(step, loss, {"acc": (logits.detach().argmax(dim=1) == y).float().mean()},
                         batch_size=points.shape[0])
            backward_step(loss, optimizer, params, args.grad_clip, scaler)  # backward, clip, step (fp16: scaled)
            if meter.stop:  # a stop signal: end after this step's update
                break
    return meter.stats


def final_evaluation(args: argparse.Namespace, run: Run, cls_evaluator: ClsEvaluator, test_set: Dataset,
                     test_loader: Any, split: str) -> dict[str, Any]:
    """Evaluate the kept checkpoint on test (rebuilt from its file, as --eval does); write results.json."""
    best = run.ckpt_dir / "classifier_best.pth"
    model_args = run.config["model_args"]
    kept, _, _ = load_classifier(PROG, best, model_args["k"], args.dropout, args.edgeconv)
    metrics, out = cls_evaluator.evaluate(kept.to(run.device), test_loader, progress=not args.no_progress, desc="test")
    rule = ("held-out val OA" if split == "val" else
            f"test OA (recipe {args.recipe}'s rule for its reported number: selected on test)")
    run.logger.info(f"Kept checkpoint: epoch {run.best_epoch} ({rule} {100 * run.best_metric:.2f}), {best}")
    results = {"mode": "train", "checkpoint": str(best), "best_epoch": run.best_epoch, "selected_on": split,
               "selection_metric": rule, "selection_value": run.best_metric, "model": run.config["model"],
               "model_args": model_args, "init_weights": run.config["init_weights"], "history": run.history,
               **report(metrics, out, test_set, args, run.run_dir / PLOT_FILE,
                        f"{args.exp_name}, epoch {run.best_epoch}: test", run.logger)}
    atomic_write_text(run.run_dir / "results.json", json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
