"""CrossPoint pretraining: intra-modal (IMID) + cross-modal (CMID) contrastive learning on ShapeNetRender.

Single process (the defaults are the published settings; ``--preset tiny|small`` for CPU-sized runs)::

    python train_crossmodal.py --model dgcnn --exp_name crosspoint_dgcnn_cls

Several GPUs (DDP is switched on by torchrun's environment; ``--batch_size`` is the global batch)::

    torchrun --standalone --nproc_per_node 4 train_crossmodal.py --model dgcnn ... [--gather_negatives]

Resume (continues after the last finished epoch; a run can only be resumed at epoch boundaries)::

    python train_crossmodal.py --resume runs/crosspoint_dgcnn_cls

Output, under ``<output_dir>/<exp_name>/`` (see util/run.py): ``config.json``, ``log.txt``,
``metrics.jsonl`` and ``checkpoints/`` with ``point_encoder_{best,last}.pth`` and
``image_encoder_{best,last}.pth`` (plain state dicts in the format of the official files, each with a
``.json`` sidecar) and ``training_state_last.pt`` (everything needed for an exact resume).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from datasets.classification import CLASSIFICATION_DATASETS, SCANOBJECTNN_VARIANTS, ClassificationData
from datasets.shapenet_render import ShapeNetRender
from datasets.provenance import data_kind
from datasets.transforms import crosspoint_image_transform
from models import build_image_encoder, build_point_encoder
from models.losses import crosspoint_loss, nt_xent
from models.sync_bn import convert_sync_batchnorm
from util import distributed
from util.checkpoint import WeightsMeta
from util.optim import backward_step
from util.presets import PRETRAIN_K, PUBLISHED_EMB_DIMS, add_preset_argument, parse_with_preset
from util.run import (AT_LEAST_1, FRACTION, POSITIVE, Run, add_run_arguments, check_args, check_batch,
                      check_points_for_k, epoch_means, every_n_epochs, open_process)
from util.device import autocast_context, make_grad_scaler
from util.epoch import EpochMeter
from util.loaders import loader_kwargs, stratified_split
from util.rng import make_generator

PROG = "train_crossmodal.py"
# Config keys that fix the shapes of the saved models: resuming with other values is refused.
MODEL_SETTINGS = ("model", "k", "emb_dims", "img_model", "imid_only")


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface; defaults are the published CrossPoint settings (``--preset paper``)."""
    p = argparse.ArgumentParser(
        prog=PROG, description="CrossPoint pretraining (IMID + CMID) on ShapeNetRender.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_preset_argument(p, "pretrain")
    add_run_arguments(p, default_name="exp", data_help="data root with ShapeNet/ and ShapeNetRendering/ (and the "
                      "probe dataset)", num_workers_help="DataLoader workers (original: 0)")

    g = p.add_argument_group("model")
    g.add_argument("--model", type=str, default="dgcnn", choices=["dgcnn", "dgcnn_seg", "pointnet"],
                   help="point encoder (paper: dgcnn for classification, dgcnn_seg for part segmentation)")
    g.add_argument("--img_model", type=str, default="resnet50", choices=["resnet50", "resnet18"],
                   help="image encoder, trained from scratch (paper: resnet50)")
    g.add_argument("--k", type=int, default=PRETRAIN_K, help=f"DGCNN neighbours (paper script: {PRETRAIN_K})")
    g.add_argument("--emb_dims", type=int, default=PUBLISHED_EMB_DIMS,
                   help=f"embedding width (paper: {PUBLISHED_EMB_DIMS})")
    g.add_argument("--edgeconv", type=str, default="fast", choices=["fast", "plain"],
                   help="EdgeConv implementation (same function; 'plain' materialises the edge tensor like the original)")

    g = p.add_argument_group("data")
    g.add_argument("--num_points", "--points_num", dest="num_points", type=int, default=2048,
                   help="points per cloud (paper: 2048)")
    g.add_argument("--image_size", type=int, default=224, help="rendered image size (paper: 224)")
    g.add_argument("--persistent_workers", action="store_true",
                   help="keep workers alive across epochs (faster, but a resumed run is then not bit-exact)")

    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=100, help="epochs (paper: 100)")
    g.add_argument("--batch_size", type=int, default=20,
                   help="global batch of objects, split over DDP ranks (paper: 20)")
    g.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (paper: 0.001)")
    g.add_argument("--wd", type=float, default=1e-6, help="Adam weight decay (paper: 1e-6)")
    g.add_argument("--temperature", type=float, default=0.1, help="NT-Xent temperature (paper: 0.1)")
    g.add_argument("--imid_only", action="store_true",
                   help="ablation: loss = IMID only (no image branch; no image encoder is trained)")
    g.add_argument("--lr_step_before_epoch", action="store_true",
                   help="call the cosine scheduler at the start of each epoch like the original script "
                        "(epoch e then trains at the schedule value of e+1 and the last epoch at lr 0)")

    g = p.add_argument_group("performance")
    g.add_argument("--compile", action="store_true", help="torch.compile the encoders")
    g.add_argument("--channels_last", action="store_true", help="channels_last image encoder on CUDA")
    g.add_argument("--gather_negatives", action="store_true",
                   help="under DDP, gather embeddings from all ranks so the negatives span the global batch "
                        "(original DDP script: per-rank negatives)")

    g = p.add_argument_group("best-model selection (linear-SVM probe)")
    g.add_argument("--probe_dataset", type=str, default="modelnet40", choices=[*CLASSIFICATION_DATASETS, "none"],
                   help="dataset of the SVM probe that picks the best epoch (original: modelnet40; custom: the "
                        "classification set of a root written by python -m datasets.prepare_meshes); none: best = last")
    g.add_argument("--probe_variant", type=str, default="obj_bg", choices=SCANOBJECTNN_VARIANTS,
                   help="ScanObjectNN variant for --probe_dataset scanobjectnn")
    g.add_argument("--select_best_on", type=str, default="val", choices=["val", "test"],
                   help="val: SVM fit on the probe train split minus a held-out part, best = highest "
                        "held-out accuracy; test: fit on the whole train split, best = highest test "
                        "accuracy (the original's behaviour, which selects on the test set)")
    g.add_argument("--probe_val_fraction", type=float, default=0.2,
                   help="held-out fraction of the probe train split (stratified, seeded)")
    g.add_argument("--probe_every", type=int, default=1, help="probe every N epochs (and after the last)")
    g.add_argument("--probe_points", type=int, default=1024, help="points per probe cloud (original: 1024)")
    g.add_argument("--probe_C", type=float, default=0.1, help="SVM C of the probe (original training script: 0.1)")
    g.add_argument("--probe_batch_size", type=int, default=128, help="probe feature-extraction batch (original: 128)")
    return p


def validate(args: argparse.Namespace, world_size: int) -> None:
    """Every flag checked before anything is written (messages name the flag)."""
    check_args(PROG, args, {"image_size": AT_LEAST_1, "probe_every": AT_LEAST_1, "probe_points": AT_LEAST_1,
                            "probe_batch_size": AT_LEAST_1, "temperature": POSITIVE, "probe_C": POSITIVE,
                            "probe_val_fraction": FRACTION})
    check_batch(PROG, args.batch_size, world_size, "NT-Xent")
    if args.model != "pointnet":
        check_points_for_k(PROG, args.num_points, args.k)
        if args.probe_dataset != "none":
            check_points_for_k(PROG, args.probe_points, args.k)
    if args.gather_negatives and world_size == 1:
        warnings.warn("--gather_negatives has no effect without DDP (torchrun).", stacklevel=2)


# ----------------------------------------------------------------------------------------------
# Model pieces
# ----------------------------------------------------------------------------------------------


class ProjectedEncoder(nn.Module):
    """``encoder`` followed by its ``inv_head``: x -> (B, 256) invariant-space embedding.

    Wrapping both in one module lets DDP and torch.compile see every trained parameter in one
    forward. The wrapped encoder keeps its own key names, so ``encoder.state_dict()`` is the
    published checkpoint format.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, N) points or (B, 3, H, W) images -> (B, 256)."""
        return self.encoder.inv_head(self.encoder(x))


# ----------------------------------------------------------------------------------------------
# Best-model probe
# ----------------------------------------------------------------------------------------------


class SVMProbe:
    """Linear-SVM probe on frozen point features, used to pick the best epoch.

    ``select_on="val"``: fit on the probe train split minus a stratified held-out part, score the
    held-out part (the selection metric) and, for information, the test split, with one fit.
    ``select_on="test"``: fit on the whole train split and score the test split (the original).
    The feature loaders use ``num_workers`` workers and pinned memory on CUDA; their worker seeds come from
    their own generator, so probing never draws from the training RNG.
    """

    def __init__(
        self,
        train_set: Dataset,
        test_set: Dataset,
        select_on: str,
        val_fraction: float,
        C: float,
        batch_size: int,
        seed: int,
        device: torch.device,
        num_workers: int,
    ) -> None:
        from evaluation.features import extract_features
        from evaluation.svm import linear_svm

        self._extract, self._svm = extract_features, linear_svm
        self.select_on = select_on
        self.C = C
        kwargs = loader_kwargs(device, num_workers, make_generator(0))
        self.train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=False, **kwargs)
        self.test_loader = DataLoader(test_set, batch_size=batch_size, shuffle=False, **kwargs)
        labels = np.asarray(train_set.labels).reshape(-1)  # (M,)
        self.fit_idx, self.val_idx = (
            stratified_split(labels, val_fraction, seed) if select_on == "val" else (np.arange(len(labels)), None)
        )

    def __call__(self, encoder: nn.Module, device: torch.device, progress: bool) -> dict[str, float]:
        """Returns {"metric": selection accuracy, "val_acc"?: .., "test_acc": ..}."""
        train_f, train_y = self._extract(encoder, self.train_loader, device, progress=progress, desc="probe train")
        test_f, test_y = self._extract(encoder, self.test_loader, device, progress=progress, desc="probe test")
        if self.select_on == "test":
            res = self._svm(train_f, train_y, test_f, test_y, C=self.C)
            return {"metric": float(res["accuracy"]), "test_acc": float(res["accuracy"])}
        n_val = len(self.val_idx)
        eval_f = np.concatenate((train_f[self.val_idx], test_f))  # (n_val + N_test, D)
        eval_y = np.concatenate((train_y[self.val_idx], test_y))
        res = self._svm(train_f[self.fit_idx], train_y[self.fit_idx], eval_f, eval_y, C=self.C)
        pred = np.asarray(res["predictions"])
        val_acc = float(np.mean(pred[:n_val] == eval_y[:n_val]))
        test_acc = float(np.mean(pred[n_val:] == eval_y[n_val:]))
        return {"metric": val_acc, "val_acc": val_acc, "test_acc": test_acc}


def build_probe(args: argparse.Namespace, device: torch.device) -> SVMProbe | None:
    """The probe for ``--probe_dataset`` (features on ``device`` with ``--num_workers`` loader workers); fails
    early with a clear message when its data is missing."""
    if args.probe_dataset == "none":
        return None
    data = ClassificationData(args.probe_dataset, args.data_root, args.probe_variant, args.probe_points)
    try:
        train_set, test_set = data.load("train"), data.load("test")
    except FileNotFoundError as err:
        raise SystemExit(
            f"{PROG}: --probe_dataset {args.probe_dataset} needs its data under "
            f"--data_root {args.data_root}: {err}\nDownload it (see data/README.md), or pass "
            "--probe_dataset none to skip best-model selection (best = last)."
        ) from err
    return SVMProbe(train_set, test_set, args.select_best_on, args.probe_val_fraction, args.probe_C,
                    args.probe_batch_size, args.seed, device, args.num_workers)


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run pretraining. Returns {"run_dir", "history" (per-epoch dicts), "best_metric", "best_epoch"}."""
    args = parse_with_preset(build_parser(), "pretrain", argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    with open_process(PROG, args, validate) as (info, device):
        with Run(PROG, args, info, device, default_name="exp") as run:
            results = run.nothing_to_do() if run.already_finished else pretrain(args, run)
        return distributed.broadcast_object(results)


def build_models(args: argparse.Namespace, run: Run) -> tuple[dict[str, nn.Module], nn.Module, nn.Module | None]:
    """The encoders (``{"point_encoder", "image_encoder"?}``, unwrapped: their state dicts are the published
    format) and the trained networks ``point_net`` / ``image_net`` (ProjectedEncoder, DDP-wrapped under torchrun,
    compiled with --compile; ``image_net`` is None for --imid_only)."""
    device = run.device
    sync_bn = args.sync_bn and run.info.is_distributed  # BatchNorm (and fast EdgeConv) statistics over all ranks
    point_encoder = build_point_encoder(args.model, k=args.k, emb_dims=args.emb_dims, edgeconv=args.edgeconv)
    if sync_bn:
        point_encoder = convert_sync_batchnorm(point_encoder)
    models: dict[str, nn.Module] = {"point_encoder": point_encoder.to(device)}
    image_net: nn.Module | None = None
    if not args.imid_only:
        image_encoder = build_image_encoder(args.img_model).to(device)
        if sync_bn:
            image_encoder = convert_sync_batchnorm(image_encoder)
        if args.channels_last and device.type == "cuda":
            image_encoder.to(memory_format=torch.channels_last)
        models["image_encoder"] = image_encoder
        image_net = distributed.wrap_ddp(ProjectedEncoder(image_encoder), device)
    point_net: nn.Module = distributed.wrap_ddp(ProjectedEncoder(point_encoder), device)
    if args.compile:
        point_net = torch.compile(point_net)
        image_net = torch.compile(image_net) if image_net is not None else None
    return models, point_net, image_net


def pretrain(args: argparse.Namespace, run: Run) -> dict[str, Any]:
    """Data, models, optimizer and schedule, then the epoch loop: train, step the schedule, probe, keep the best,
    log and checkpoint. Returns the run summary."""
    device = run.device
    dataset = ShapeNetRender(args.data_root, img_transform=crosspoint_image_transform(args.image_size),
                             num_points=args.num_points)
    loader = run.train_loader(dataset, args.batch_size, args.num_workers, args.persistent_workers)
    models, point_net, image_net = build_models(args, run)
    # One Adam over both encoders, like the original (which passes the concatenated parameter list); the two
    # param groups only name them. Cosine annealing over all epochs, stepped once per epoch.
    optimizer = torch.optim.Adam([{"params": list(m.parameters()), "name": name.split("_")[0]}
                                  for name, m in models.items()], lr=args.lr, weight_decay=args.wd)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs, eta_min=0.0)
    scaler = make_grad_scaler(device, args.amp)
    probe = build_probe(args, device)
    run.start_or_resume(models, optimizer, scheduler, scaler, model_settings=MODEL_SETTINGS,
                        config_extra={"dataset_objects": len(dataset), "data": data_kind(args.data_root)})
    image_txt = "no image encoder (IMID only)" if args.imid_only else args.img_model
    run.logger.info(f"CrossPoint pretraining: {args.model} + {image_txt}, {len(dataset)} objects, {len(loader)} "
                    f"steps/epoch x {run.info.world_size} process(es), device {device}, run dir {run.run_dir}")
    for epoch in run.remaining_epochs():
        if args.lr_step_before_epoch:
            # Differs from the default order on purpose (reproduces the original's scheduler call).
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)`")
                scheduler.step()
        for m in models.values():
            m.train()
        dataset.reset_image_stats()
        stats = train_one_epoch(point_net, image_net, loader, optimizer, scaler, run.epoch_meter(loader, epoch), args,
                                gather=args.gather_negatives and run.info.is_distributed,
                                check_shapes=epoch == run.start_epoch)
        if not args.lr_step_before_epoch:
            scheduler.step()
        record = epoch_means(epoch, stats, device)
        metric = None
        if probe is not None and run.is_main and every_n_epochs(epoch, args.probe_every, args.epochs):
            res = probe(models["point_encoder"], device, progress=not args.no_progress)
            record.update({f"probe_{k}": v for k, v in res.items() if k != "metric"})
            record["probe_metric"] = metric = res["metric"]
        # As the original, a later epoch must be strictly better to replace the kept one; without a probe,
        # best = last.
        is_best = run.update_best(epoch, metric, ties_replace=False, best_if_unmeasured=probe is None)
        run.log_epoch(record, epoch_line(epoch, record, dataset), is_best)
        probe_meta = {k: record[k] for k in record if k.startswith("probe_")}
        run.save_checkpoint(epoch, is_best, {kind: (module, weights_meta(args, kind, epoch, run.config, probe_meta))
                                             for kind, module in models.items()})
    return run.summary()


def train_one_epoch(point_net: nn.Module, image_net: nn.Module | None, loader: DataLoader,
                    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None, meter: EpochMeter,
                    args: argparse.Namespace, gather: bool, check_shapes: bool) -> dict[str, float]:
    """One epoch of CrossPoint; returns the meter's epoch means (loss, imid, cmid?, lr, samples_per_s, ...).

    Both augmented point clouds go through the point encoder in ONE batch of 2B (like the original, so BatchNorm
    statistics are computed over both views together); the rendered image goes through the image encoder.
    L = IMID(z1, z2) + CMID((z1 + z2) / 2, h); IMID alone with --imid_only. With ``gather`` (--gather_negatives
    under DDP), z1, z2 and h are all-gathered (gradient-correct) before the loss; ``check_shapes`` compares their shapes
    across ranks at the first step (a host sync: once per invocation, never per step).
    """
    device = meter.device
    channels_last = args.channels_last and device.type == "cuda"
    params = [p for group in optimizer.param_groups for p in group["params"]]
    with meter:
        for step, (pc1, pc2, img) in enumerate(loader):  # (B, N, 3), (B, N, 3), (B, 3, S, S)
            if step == meter.n_steps:  # --max_steps_per_epoch
                break
            optimizer.zero_grad(set_to_none=True)
            loss, parts = forward_loss(point_net, image_net, (pc1, pc2, img), device, args.amp, args.temperature,
                                       gather, channels_last, check_shapes=check_shapes and step == 0)
            meter.update(step, loss, parts, batch_size=pc1.shape[0])  # reads the sums every --print_freq steps
            backward_step(loss, optimizer, params, args.grad_clip, scaler)  # backward, clip, step (fp16: scaled)
            if meter.stop:  # a stop signal: end after this step's update
                break
    return meter.stats


def forward_loss(point_net: nn.Module, image_net: nn.Module | None, batch: Any, device: torch.device, amp: str,
                 temperature: float, gather: bool, channels_last: bool,
                 check_shapes: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The CrossPoint loss of one batch ``(pc1 (B, N, 3), pc2 (B, N, 3), img (B, 3, S, S))``.

    Returns (loss, {"imid", "cmid"} detached; {"imid"} without an image branch). Both views go through
    ``point_net`` as one batch of 2B; under autocast for ``amp``; ``gather``: all-gather z1, z2, h over the DDP
    ranks first (``check_shapes``: compare their shapes across ranks, a host sync).
    """
    pc1, pc2, img = batch
    pc1, pc2 = pc1.to(device, non_blocking=True), pc2.to(device, non_blocking=True)
    b = pc1.shape[0]
    points = torch.cat((pc1, pc2), dim=0).transpose(1, 2).contiguous()  # (2B, 3, N)
    with autocast_context(device, amp):
        z = point_net(points)  # (2B, 256)
        h = None
        if image_net is not None:
            img = img.to(device, non_blocking=True)
            h = image_net(img.contiguous(memory_format=torch.channels_last) if channels_last else img)  # (B, 256)
    z1, z2 = z[:b], z[b:]  # (B, 256) each
    if gather:
        if check_shapes:
            distributed.check_same_shapes(z1, z2, h)
        z1, z2 = distributed.all_gather_with_grad(z1), distributed.all_gather_with_grad(z2)  # (W*B, 256)
        h = distributed.all_gather_with_grad(h) if h is not None else None
    if h is None:
        imid = nt_xent(z1, z2, temperature)
        return imid, {"imid": imid.detach()}
    total, parts = crosspoint_loss(z1, z2, h, temperature)
    return total, {k: v.detach() for k, v in parts.items()}


def epoch_line(epoch: int, record: dict[str, Any], dataset: ShapeNetRender) -> str:
    """The epoch's log line; adds ``truncated_image_loads`` to ``record``. Truncated renderings load in part, as
    in the original (each file is warned about once)."""
    parts = " ".join(f"{k}={record[k]:.4f}" for k in ("loss", "imid", "cmid") if k in record)
    probe_txt = "".join(f" {k}={record[k]:.4f}" for k in ("probe_val_acc", "probe_test_acc") if k in record)
    images = dataset.image_stats()
    record["truncated_image_loads"] = images["truncated_loads"]
    if images["truncated_loads"]:
        probe_txt += (f" | {images['truncated_loads']} load(s) of truncated renderings "
                      f"({images['truncated_files']} file(s) so far, named in the warnings)")
    return f"epoch {epoch}: {parts} lr={record['lr']:.3e} {record['samples_per_s']:.1f} samples/s{probe_txt}"


def weights_meta(args: argparse.Namespace, kind: str, epoch: int, config: dict, extra: dict) -> WeightsMeta:
    """Sidecar of a pretraining weights file (model name and constructor arguments, so it can be rebuilt)."""
    if kind == "point_encoder":
        model, model_args = args.model, {"k": args.k, "emb_dims": args.emb_dims}
    else:
        model, model_args = args.img_model, {}
    return WeightsMeta(model=model, kind=kind, model_args=model_args, epoch=epoch, source=PROG, config=config,
                       extra=extra)


if __name__ == "__main__":
    main()
