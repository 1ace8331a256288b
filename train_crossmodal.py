"""CrossPoint pretraining: intra-modal (IMID) + cross-modal (CMID) contrastive learning on ShapeNetRender.

Single process::

    python train_crossmodal.py --model dgcnn --epochs 100 --batch_size 20 --k 15 \
        --exp_name crosspoint_dgcnn_cls

Several GPUs (DDP is switched on by torchrun's environment; ``--batch_size`` is the global batch)::

    torchrun --standalone --nproc_per_node 4 train_crossmodal.py --model dgcnn ... [--gather_negatives]

Resume (continues after the last finished epoch; a run can only be resumed at epoch boundaries)::

    python train_crossmodal.py --resume runs/crosspoint_dgcnn_cls

Output, under ``<output_dir>/<exp_name>/``: ``config.json``, ``log.txt``, ``metrics.jsonl`` and
``checkpoints/`` with ``point_encoder_{best,last}.pth`` and ``image_encoder_{best,last}.pth`` (plain
state dicts in the format of the official files, each with a ``.json`` sidecar) and
``training_state_last.pt`` (everything needed for an exact resume).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from datasets.shapenet_render import ShapeNetRender
from datasets.transforms import crosspoint_image_transform
from models import build_image_encoder, build_point_encoder
from models.losses import crosspoint_loss, nt_xent
from util import distributed as du
from util.checkpoint import atomic_write_text, save_weights
from util.logger import Logger
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


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface; defaults are the published CrossPoint settings."""
    p = argparse.ArgumentParser(
        description="CrossPoint pretraining (IMID + CMID) on ShapeNetRender.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("run")
    g.add_argument("--exp_name", type=str, default=None,
                   help="run name; output goes to <output_dir>/<exp_name> (default 'exp', or the resumed run)")
    g.add_argument("--output_dir", type=str, default="runs", help="parent directory of runs")
    g.add_argument("--data_root", type=str, default="data", help="data root with ShapeNet/ and ShapeNetRendering/")
    g.add_argument("--device", type=str, default="auto", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--seed", type=int, default=1, help="random seed (original: 1)")
    g.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels (torch.use_deterministic_algorithms, cuDNN deterministic)")
    g.add_argument("--resume", type=str, default=None,
                   help="run directory or training_state_last.pt to resume from (continues at the next epoch)")
    g.add_argument("--wandb", type=str, default="disabled", choices=["online", "offline", "disabled"],
                   help="Weights & Biases logging (the original always logged online)")
    g.add_argument("--wandb_project", type=str, default="CrossPoint", help="wandb project")

    g = p.add_argument_group("model")
    g.add_argument("--model", type=str, default="dgcnn", choices=["dgcnn", "dgcnn_seg", "pointnet"],
                   help="point encoder (paper: dgcnn for classification, dgcnn_seg for part segmentation)")
    g.add_argument("--img_model", type=str, default="resnet50", choices=["resnet50", "resnet18"],
                   help="image encoder, trained from scratch (paper: resnet50)")
    g.add_argument("--k", type=int, default=15, help="DGCNN neighbours (paper script: 15)")
    g.add_argument("--emb_dims", type=int, default=1024, help="embedding width (paper: 1024)")
    g.add_argument("--edgeconv", type=str, default="fast", choices=["fast", "plain"],
                   help="EdgeConv implementation (same function; 'plain' materialises the edge tensor like the original)")

    g = p.add_argument_group("data")
    g.add_argument("--num_points", "--points_num", dest="num_points", type=int, default=2048,
                   help="points per cloud (paper: 2048)")
    g.add_argument("--image_size", type=int, default=224, help="rendered image size (paper: 224)")
    g.add_argument("--num_workers", type=int, default=4, help="DataLoader workers (original: 0)")
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
    g.add_argument("--grad_clip", type=float, default=None, help="clip the gradient norm (original: none)")
    g.add_argument("--max_steps_per_epoch", type=int, default=None, help="cap the steps per epoch (quick runs)")
    g.add_argument("--stop_after", type=int, default=None,
                   help="stop cleanly after this many epochs in this invocation (time-limited jobs); "
                        "continue later with --resume")

    g = p.add_argument_group("performance")
    g.add_argument("--amp", type=str, default="none", choices=["none", "bf16", "fp16"],
                   help="autocast on CUDA (original: fp32); ignored on CPU")
    g.add_argument("--compile", action="store_true", help="torch.compile the encoders")
    g.add_argument("--channels_last", action="store_true", help="channels_last image encoder on CUDA")
    g.add_argument("--gather_negatives", action="store_true",
                   help="under DDP, gather embeddings from all ranks so the negatives span the global batch "
                        "(original DDP script: per-rank negatives)")

    g = p.add_argument_group("logging and checkpoints")
    g.add_argument("--print_freq", type=int, default=50, help="log every N steps (original: 50; paper script: 200)")
    g.add_argument("--save_every", type=int, default=0,
                   help="also keep the weights of every N-th epoch (original: 50); 0 = only best and last")
    g.add_argument("--no_progress", action="store_true", help="no tqdm bars")

    g = p.add_argument_group("best-model selection (linear-SVM probe)")
    g.add_argument("--probe_dataset", type=str, default="modelnet40",
                   choices=["modelnet40", "scanobjectnn", "none"],
                   help="dataset of the SVM probe that picks the best epoch (original: modelnet40); "
                        "none: best = last")
    g.add_argument("--probe_variant", type=str, default="obj_bg", choices=["obj_bg", "obj_only", "pb_t50_rs"],
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


class CrossPointStep:
    """One CrossPoint forward pass: ``batch -> (loss, {"imid", "cmid"})``.

    Both augmented point clouds go through the point encoder in ONE batch of 2B (like the original,
    so BatchNorm statistics are computed over both views together); the rendered image goes through
    the image encoder. L = IMID(z1, z2) + CMID((z1 + z2) / 2, h).

    Args:
        point_net: ProjectedEncoder (possibly DDP/compile-wrapped): (2B, 3, N) -> (2B, 256).
        image_net: ProjectedEncoder for images, or None for the IMID-only ablation.
        device: training device.
        amp: "none" | "bf16" | "fp16".
        temperature: NT-Xent temperature.
        gather_negatives: all-gather z1, z2, h over DDP ranks before the loss (gradient-correct).
        channels_last: feed images as channels_last.
    """

    def __init__(
        self,
        point_net: nn.Module,
        image_net: nn.Module | None,
        device: torch.device,
        amp: str,
        temperature: float,
        gather_negatives: bool,
        channels_last: bool,
    ) -> None:
        self.point_net = point_net
        self.image_net = image_net
        self.device = device
        self.amp = amp
        self.temperature = temperature
        self.gather_negatives = gather_negatives
        self.channels_last = channels_last

    def __call__(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pc1, pc2, img = batch  # (B, N, 3), (B, N, 3), (B, 3, S, S)
        pc1 = pc1.to(self.device, non_blocking=True)
        pc2 = pc2.to(self.device, non_blocking=True)
        b = pc1.shape[0]
        points = torch.cat((pc1, pc2), dim=0).transpose(1, 2).contiguous()  # (2B, 3, N)
        with autocast_context(self.device, self.amp):
            z = self.point_net(points)  # (2B, 256)
            h = None
            if self.image_net is not None:
                img = img.to(self.device, non_blocking=True)
                if self.channels_last:
                    img = img.contiguous(memory_format=torch.channels_last)
                h = self.image_net(img)  # (B, 256)
        z1, z2 = z[:b], z[b:]  # (B, 256) each
        if self.gather_negatives:
            z1, z2 = du.all_gather_with_grad(z1), du.all_gather_with_grad(z2)  # (W*B, 256)
            h = du.all_gather_with_grad(h) if h is not None else None
        if h is None:
            imid = nt_xent(z1, z2, self.temperature)
            return imid, {"imid": imid.detach()}
        total, parts = crosspoint_loss(z1, z2, h, self.temperature)
        return total, {k: v.detach() for k, v in parts.items()}


# ----------------------------------------------------------------------------------------------
# Best-model probe
# ----------------------------------------------------------------------------------------------


class SVMProbe:
    """Linear-SVM probe on frozen point features, used to pick the best epoch.

    ``select_on="val"``: fit on the probe train split minus a stratified held-out part, score the
    held-out part (the selection metric) and, for information, the test split, with one fit.
    ``select_on="test"``: fit on the whole train split and score the test split (the original).
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
    ) -> None:
        from util.evaluation import extract_features, linear_svm

        self._extract, self._svm = extract_features, linear_svm
        self.select_on = select_on
        self.C = C
        g = make_generator(0)
        self.train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=False, generator=g)
        self.test_loader = DataLoader(test_set, batch_size=batch_size, shuffle=False, generator=g)
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


def build_probe(args: argparse.Namespace) -> SVMProbe | None:
    """The probe for ``--probe_dataset``; fails early with a clear message when its data is missing."""
    if args.probe_dataset == "none":
        return None
    try:
        if args.probe_dataset == "modelnet40":
            from datasets.modelnet40 import ModelNet40

            train_set = ModelNet40(args.data_root, "train", num_points=args.probe_points)
            test_set = ModelNet40(args.data_root, "test", num_points=args.probe_points)
        else:
            from datasets.scanobjectnn import ScanObjectNN

            train_set = ScanObjectNN(args.data_root, "train", variant=args.probe_variant, num_points=args.probe_points)
            test_set = ScanObjectNN(args.data_root, "test", variant=args.probe_variant, num_points=args.probe_points)
    except FileNotFoundError as err:
        raise SystemExit(
            f"train_crossmodal.py: --probe_dataset {args.probe_dataset} needs its data under "
            f"--data_root {args.data_root}: {err}\nDownload it (see data/README.md), or pass "
            "--probe_dataset none to skip best-model selection (best = last)."
        ) from err
    return SVMProbe(train_set, test_set, args.select_best_on, args.probe_val_fraction, args.probe_C,
                    args.probe_batch_size, args.seed)


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def weights_meta(args: argparse.Namespace, kind: str, epoch: int, config: dict, extra: dict) -> dict:
    """Sidecar JSON of a weights file (model name and constructor arguments, so it can be rebuilt)."""
    if kind == "point_encoder":
        model, model_args = args.model, {"k": args.k, "emb_dims": args.emb_dims}
    else:
        model, model_args = args.img_model, {}
    return {"model": model, "model_args": model_args, "kind": kind, "epoch": epoch, "source": "train_crossmodal.py",
            "config": config, **extra}


def save_epoch_weights(
    ckpt_dir: Path,
    tags: list[str],
    point_encoder: nn.Module,
    image_encoder: nn.Module | None,
    args: argparse.Namespace,
    epoch: int,
    config: dict,
    extra: dict,
) -> None:
    """Write point (and image) encoder weights as ``<kind>_<tag>.pth`` + sidecar for every tag."""
    encoders = [("point_encoder", point_encoder)] + ([("image_encoder", image_encoder)] if image_encoder else [])
    for kind, module in encoders:
        state = {k: v.detach().cpu() for k, v in du.unwrap(module).state_dict().items()}
        for tag in tags:
            save_weights(state, ckpt_dir / f"{kind}_{tag}.pth", weights_meta(args, kind, epoch, config, extra))


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def _config(args: argparse.Namespace, device: torch.device, info: du.DistInfo, n_objects: int) -> dict:
    cfg = dict(vars(args))
    cfg.update(
        resolved_device=str(device),
        world_size=info.world_size,
        batch_size_per_rank=args.batch_size // info.world_size,
        dataset_objects=n_objects,
        torch_version=str(torch.__version__),
        python_version=platform.python_version(),
    )
    return json.loads(json.dumps(cfg))  # plain JSON types only, so torch.load(weights_only=True) reads it


def _check_args(args: argparse.Namespace, info: du.DistInfo) -> None:
    if args.batch_size % info.world_size:
        raise SystemExit(
            f"train_crossmodal.py: --batch_size {args.batch_size} (global) is not divisible by the "
            f"{info.world_size} DDP processes."
        )
    if args.batch_size // info.world_size < 2:
        raise SystemExit("train_crossmodal.py: NT-Xent needs at least 2 objects per batch per process.")
    if args.gather_negatives and not info.is_distributed:
        warnings.warn("--gather_negatives has no effect without DDP (torchrun).", stacklevel=2)
    for name in ("epochs", "probe_every"):
        if getattr(args, name) < 1:
            raise SystemExit(f"train_crossmodal.py: --{name} must be at least 1, got {getattr(args, name)}.")
    if args.stop_after is not None and args.stop_after < 1:
        raise SystemExit(f"train_crossmodal.py: --stop_after must be at least 1, got {args.stop_after}.")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run pretraining. Returns {"run_dir", "history" (per-epoch dicts), "best_metric", "best_epoch"}."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    env = du.distributed_env()
    device = resolve_device(args.device, local_rank=env.local_rank)
    info = du.init_distributed(backend=du.backend_for(device))
    try:
        return _train(args, info, device)
    finally:
        du.cleanup()


@dataclass
class PretrainRun:
    """Everything the epoch loop needs, built once by ``_setup`` (or restored from a training state)."""

    args: argparse.Namespace
    info: du.DistInfo
    device: torch.device
    run_dir: Path
    loader: DataLoader
    loader_gen: torch.Generator
    step_fn: CrossPointStep
    models: dict[str, nn.Module]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    probe: SVMProbe | None
    logger: Logger
    config: dict[str, Any]
    start_epoch: int = 0
    best_metric: float = -math.inf
    best_epoch: int = -1
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def summary(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "history": self.history, "best_metric": self.best_metric,
                "best_epoch": self.best_epoch}


def _train(args: argparse.Namespace, info: du.DistInfo, device: torch.device) -> dict[str, Any]:
    run = _setup(args, info, device)
    try:
        _run_epochs(run)
    except NonFiniteLossError as err:
        last_good = run.ckpt_dir / STATE_FILE
        where = (f"The last good checkpoint is {last_good} (epoch {run.history[-1]['epoch']}); resume from it "
                 f"with --resume {run.run_dir} after fixing the cause." if run.history and last_good.is_file()
                 else "No checkpoint had been written yet.")
        msg = f"ERROR: training stopped: {err}\nNo weights were written for the failing epoch. {where}"
        run.logger.info(msg)
        run.logger.close()
        raise SystemExit(msg) from err
    run.logger.close()
    return run.summary()


def _setup(args: argparse.Namespace, info: du.DistInfo, device: torch.device) -> PretrainRun:
    """Data, models, optimiser, schedule, probe and logger; restores a training state with --resume."""
    _check_args(args, info)
    resume_path = resolve_resume_path(args.resume, STATE_FILE, "train_crossmodal.py") if args.resume else None
    if args.exp_name is None:
        run_dir = resume_path.parent.parent if resume_path is not None else Path(args.output_dir) / "exp"
    else:
        run_dir = Path(args.output_dir) / args.exp_name
    args.exp_name = run_dir.name
    seed_everything(args.seed, deterministic=args.deterministic)

    # Data.
    dataset = ShapeNetRender(args.data_root, img_transform=crosspoint_image_transform(args.image_size),
                             num_points=args.num_points)
    if len(dataset) < args.batch_size:
        raise SystemExit(
            f"train_crossmodal.py: ShapeNetRender under {args.data_root} has {len(dataset)} objects, fewer "
            f"than --batch_size {args.batch_size}; no full batch (drop_last=True) could be formed."
        )
    sampler = (DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                  seed=args.seed, drop_last=True) if info.is_distributed else None)
    loader_gen = make_generator(args.seed + info.rank)
    loader = DataLoader(dataset, batch_size=args.batch_size // info.world_size, shuffle=sampler is None,
                        sampler=sampler, drop_last=True,
                        **loader_kwargs(device, args.num_workers, loader_gen, args.persistent_workers))

    # Models, optimiser, schedule.
    point_encoder = build_point_encoder(args.model, k=args.k, emb_dims=args.emb_dims, edgeconv=args.edgeconv)
    point_encoder.to(device)
    models: dict[str, nn.Module] = {"point_encoder": point_encoder}
    param_groups = [{"params": list(point_encoder.parameters()), "name": "point"}]
    image_net: nn.Module | None = None
    if not args.imid_only:
        image_encoder = build_image_encoder(args.img_model).to(device)
        if args.channels_last and device.type == "cuda":
            image_encoder.to(memory_format=torch.channels_last)
        models["image_encoder"] = image_encoder
        param_groups.append({"params": list(image_encoder.parameters()), "name": "image"})
        image_net = du.wrap_ddp(ProjectedEncoder(image_encoder), device)
    point_net: nn.Module = du.wrap_ddp(ProjectedEncoder(point_encoder), device)
    if args.compile:
        point_net = torch.compile(point_net)
        image_net = torch.compile(image_net) if image_net is not None else None
    # One Adam over both encoders, like the original (which passes the concatenated parameter list);
    # two param groups only name them. Cosine annealing over all epochs, stepped once per epoch.
    optimizer = torch.optim.Adam(param_groups, lr=args.lr, weight_decay=args.wd)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs, eta_min=0.0)
    scaler = make_grad_scaler(device, args.amp)
    step_fn = CrossPointStep(point_net, image_net, device, args.amp, args.temperature,
                             args.gather_negatives and info.is_distributed,
                             args.channels_last and device.type == "cuda")

    probe = build_probe(args)
    config = _config(args, device, info, len(dataset))
    logger = Logger(run_dir, wandb_mode=args.wandb, config=config, project=args.wandb_project,
                    run_name=args.exp_name, enabled=info.is_main)
    run = PretrainRun(args, info, device, run_dir, loader, loader_gen, step_fn, models, optimizer, scheduler, scaler,
                      probe, logger, config)
    if resume_path is not None:
        _restore(run, resume_path)
    elif info.world_size > 1:
        # DDP broadcasts rank 0's initial weights; the augmentations must differ between ranks.
        seed_everything(args.seed + info.rank, deterministic=args.deterministic)

    if info.is_main:
        run.ckpt_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
        image_txt = "no image encoder (IMID only)" if args.imid_only else args.img_model
        logger.info(f"CrossPoint pretraining: {args.model} + {image_txt}, {len(dataset)} objects, {len(loader)} "
                    f"steps/epoch x {info.world_size} process(es), device {device}, run dir {run_dir}")
        if args.amp != "none" and device.type != "cuda":
            logger.info(f"--amp {args.amp} is ignored on {device.type}: training in full precision.")
        if resume_path is not None:
            logger.info(f"Resumed from {resume_path}: continuing at epoch {run.start_epoch} of {args.epochs}.")
    return run


def _restore(run: PretrainRun, resume_path: Path) -> None:
    """Load a training state into ``run`` and restore this rank's RNGs (exact continuation)."""
    state = load_training_state(resume_path, models=run.models, optimizer=run.optimizer, scheduler=run.scheduler,
                                scaler=run.scaler, map_location=run.device)
    _warn_config_changes(state.get("config") or {}, vars(run.args), run.info.is_main)
    run.start_epoch = int(state["epoch"]) + 1
    extra = state["extra"]
    run.best_metric = float(extra.get("best_metric", -math.inf))
    run.best_epoch = int(extra.get("best_epoch", -1))
    run.history = list(extra.get("history", []))
    rng = state["rng"]
    rng_list = rng if isinstance(rng, list) else [rng]
    if len(rng_list) == run.info.world_size:
        set_rng_state(rng_list[run.info.rank], {"train_loader": run.loader_gen})
    else:
        warnings.warn(f"{resume_path} holds RNG states for {len(rng_list)} processes, this run has "
                      f"{run.info.world_size}; RNGs are re-seeded, so the continuation is not bit-exact.",
                      stacklevel=2)
        seed_everything(run.args.seed + 1000 * run.start_epoch + run.info.rank)


def _warn_config_changes(saved: dict[str, Any], now: dict[str, Any], is_main: bool) -> None:
    ignore = {"resume", "exp_name", "output_dir", "stop_after", "no_progress", "num_workers", "wandb",
              "print_freq", "data_root", "device", "argv"}
    changed = {k: (saved[k], now[k]) for k in now if k in saved and k not in ignore and saved[k] != now[k]}
    if changed and is_main:
        warnings.warn(f"Resuming with settings that differ from the saved run (saved -> now): {changed}", stacklevel=3)


def _run_epochs(run: PretrainRun) -> None:
    """The epoch loop: train, step the schedule, probe, write checkpoints; updates ``run`` in place."""
    args, info = run.args, run.info
    end_epoch = args.epochs if args.stop_after is None else min(args.epochs, run.start_epoch + args.stop_after)
    steps_per_epoch = min(len(run.loader), args.max_steps_per_epoch or len(run.loader))
    if run.start_epoch >= args.epochs:
        run.logger.info(f"Nothing to do: the run already finished its {args.epochs} epochs.")
    for epoch in range(run.start_epoch, end_epoch):
        if args.lr_step_before_epoch:
            # Differs from the default order on purpose (reproduces the original's scheduler call).
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)`")
                run.scheduler.step()
        for m in run.models.values():
            m.train()
        t0 = time.perf_counter()
        stats = train_one_epoch(
            run.step_fn, run.loader, run.optimizer, run.device, epoch, run.logger if info.is_main else None,
            scaler=run.scaler, max_steps=args.max_steps_per_epoch, log_every=args.print_freq,
            progress=info.is_main and not args.no_progress, grad_clip_norm=args.grad_clip,
            world_size=info.world_size, desc=f"epoch {epoch}/{args.epochs}",
        )
        if not args.lr_step_before_epoch:
            run.scheduler.step()
        means = du.all_reduce_mean({k: v for k, v in stats.items() if k not in ("samples_per_s", "steps", "time_s")},
                                   device=run.device)
        record = {"epoch": epoch, **means, "lr": stats["lr"], "samples_per_s": stats["samples_per_s"]}

        is_best = run.probe is None  # without a probe, best = last
        probe_due = run.probe is not None and ((epoch + 1) % args.probe_every == 0 or epoch + 1 == args.epochs)
        if probe_due and info.is_main:
            res = run.probe(run.models["point_encoder"], run.device, progress=not args.no_progress)
            record.update({f"probe_{k}": v for k, v in res.items() if k != "metric"})
            record["probe_metric"] = res["metric"]
            is_best = res["metric"] > run.best_metric
        is_best = bool(du.broadcast_object(is_best))
        if is_best:
            run.best_metric = float(record.get("probe_metric", run.best_metric))
            run.best_epoch = epoch
        record["time_s"] = time.perf_counter() - t0
        run.history.append(record)
        _save_epoch(run, epoch, record, is_best)
        if info.is_main:
            run.logger.log({f"epoch/{k}": v for k, v in record.items()}, step=(epoch + 1) * steps_per_epoch)
            parts = " ".join(f"{k}={record[k]:.4f}" for k in ("loss", "imid", "cmid") if k in record)
            probe_txt = "".join(f" {k}={record[k]:.4f}" for k in ("probe_val_acc", "probe_test_acc") if k in record)
            run.logger.info(f"epoch {epoch}: {parts} lr={record['lr']:.3e} {record['samples_per_s']:.1f} samples/s"
                            f"{probe_txt}{' [best]' if is_best else ''}")
        du.barrier()


def _save_epoch(run: PretrainRun, epoch: int, record: dict[str, float], is_best: bool) -> None:
    """Weights (last, best, every --save_every) and the training state. Rank 0 writes; all ranks
    contribute their RNG states so each can resume its own stream."""
    rng_states = du.all_gather_object(get_rng_state({"train_loader": run.loader_gen}))
    if not run.info.is_main:
        return
    args = run.args
    tags = ["last"] + (["best"] if is_best else [])
    if args.save_every and (epoch + 1) % args.save_every == 0:
        tags.append(f"epoch{epoch + 1}")
    probe_meta = {k: record[k] for k in record if k.startswith("probe_")}
    save_epoch_weights(run.ckpt_dir, tags, run.models["point_encoder"], run.models.get("image_encoder"), args, epoch,
                       run.config, probe_meta)
    save_training_state(
        run.ckpt_dir / STATE_FILE, models=run.models, optimizer=run.optimizer, epoch=epoch, scheduler=run.scheduler,
        scaler=run.scaler, config=run.config, rng=rng_states if run.info.world_size > 1 else rng_states[0],
        extra={"best_metric": run.best_metric, "best_epoch": run.best_epoch, "history": run.history},
    )


if __name__ == "__main__":
    main()
