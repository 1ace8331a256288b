"""The run lifecycle shared by every training script, written once.

A training script checks its flags, then trains inside a :class:`Run` (train_crossmodal.py, in short)::

    with open_process(PROG, args, validate) as (info, device):          # flags, device, DDP, input-file errors
        with Run(PROG, args, info, device, default_name="exp") as run:  # run dir + lock, seeding, stop rules
            results = run.nothing_to_do() if run.already_finished else pretrain(args, run)
        return distributed.broadcast_object(results)

    def pretrain(args, run):
        loader = run.train_loader(dataset, args.batch_size, args.num_workers)
        ...build models, optimizer, scheduler, scaler...
        run.start_or_resume(models, optimizer, scheduler, scaler, model_settings=MODEL_SETTINGS,
                            config_extra={...})                        # config.json and logs, or the saved state
        for epoch in run.remaining_epochs():
            stats = train_one_epoch(..., run.epoch_meter(loader, epoch), ...)  # the script's forward/backward/step
            scheduler.step()
            record = epoch_means(epoch, stats, run.device)
            ...evaluate when every_n_epochs(epoch, n, args.epochs)...
            is_best = run.update_best(epoch, metric, ties_replace=False)
            run.log_epoch(record, line, is_best)
            run.save_checkpoint(epoch, is_best, {"point_encoder": (module, meta)})
        return run.summary()

What it owns:
- the run directory ``<output_dir>/<exp_name>`` and the rule that a non-empty one is never overwritten
  unless the user says so (``--resume`` continues it, ``--overwrite`` deletes it first, ``--resume auto``
  starts, continues or reports it finished, so the same command can be requeued);
- one process per run directory: the lock file ``run.lock`` (pid, host, start; util.fileio.DirLock), taken by
  the main rank before anything in the directory is touched and released at exit;
- SIGTERM (SLURM preemption, ``scancel``): the step in progress finishes, the ranks agree to stop, and the
  process exits with :data:`PREEMPTED_EXIT` (75); the last finished epoch's training state is kept, so
  ``--resume auto`` redoes the interrupted epoch and the continuation is exact;
- ``config.json`` (the resolved configuration, JSON types only), ``log.txt`` and ``metrics.jsonl``
  through :class:`util.logger.Logger`;
- resume: the training state (models, optimizer, schedule, scaler, every rank's RNG streams, history,
  best metric), with a clear error when the saved run's model settings differ from the requested ones,
  a warning for other changed settings, and the logs cut back to what the restored state had logged;
- per-epoch checkpoints: ``<name>_last.pth``, ``<name>_best.pth`` and, with ``--save_every N``,
  ``<name>_epoch<E>.pth`` for every epoch E with ``E % N == 0`` (the original's rule and 0-based epoch
  numbering), each with its sidecar, then ``training_state_last.pt``; all written atomically;
- the stop on a non-finite loss and on a full disk, with a message naming the last good checkpoint;
- the end of the ``with`` block: a clean end writes ``finished.json`` (when all --epochs are done) and the log
  sizes, so a later resume cuts back only what a killed run logged; a run that fails before its first
  checkpoint deletes the run directory it created (one that existed before is never deleted).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from util import distributed
from util.checkpoint import CheckpointError, WeightsMeta, save_weights
from util.fileio import (DirLock, DiskFullError, LockHeldError, atomic_write_text, read_json, remove_stale_tmp_files,
                         user_errors)
from util.logger import LOG_FILES, Logger, wandb_login_problem
from util.checkpoint import load_training_state, save_training_state, TRAINING_STATE_NAME
from util.device import configure_backends, resolve_device, resume_exactness_note
from util.epoch import EpochMeter, NonFiniteLossError
from util.loaders import loader_kwargs
from util.rng import get_rng_state, make_generator, seed_everything, set_rng_state

__all__ = ["Run", "StopRequested", "PREEMPTED_EXIT", "RUN_LOCK_NAME", "FINISHED_NAME", "add_run_arguments",
           "check_args", "check_batch", "check_points_for_k",
           "resolve_resume_path", "open_process", "eval_run_dir", "write_eval_results", "is_better", "every_n_epochs",
           "epoch_means", "AT_LEAST_0", "AT_LEAST_1", "AT_LEAST_2", "POSITIVE",
           "NON_NEGATIVE", "FRACTION", "PROBABILITY"]


# What train_one_epoch reports besides the loss and step metrics (not averaged over ranks).
_EPOCH_BOOKKEEPING = ("lr", "samples_per_s", "steps", "time_s", "stopped")

# The exit status after a stop on SIGTERM (EX_TEMPFAIL of sysexits.h: "try again later"). A requeue script
# reads it: the training state is complete and the same command continues the run (--resume auto).
PREEMPTED_EXIT = 75
# The lock file of a run directory (one process per run) and the marker of a run that finished all its epochs.
RUN_LOCK_NAME = "run.lock"
FINISHED_NAME = "finished.json"
# Log sizes at the clean end of an invocation (checkpoints/), so a later resume keeps what it logged after the
# last checkpoint (final evaluation, "Nothing to do") and cuts back only what a killed run logged.
CLEAN_EXIT_NAME = "logs_at_clean_exit.json"

# Settings that may change between a run and its resumption without a warning.
_RESUME_FREE = {"resume", "overwrite", "exp_name", "output_dir", "stop_after", "no_progress", "num_workers", "wandb",
                "wandb_project", "print_freq", "data_root", "device", "argv", "preset", "precision_policy"}


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def add_run_arguments(parser: argparse.ArgumentParser, *, default_name: str, data_help: str,
                      num_workers_help: str) -> None:
    """The arguments every training script has: run directory, data, device, seeding, resume, logging."""
    g = parser.add_argument_group("run")
    g.add_argument("--exp_name", type=str, default=None,
                   help=f"run name; output goes to <output_dir>/<exp_name> (default '{default_name}', or the "
                        "resumed run)")
    g.add_argument("--output_dir", type=str, default="runs", help="parent directory of runs")
    g.add_argument("--data_root", type=str, default="data", help=data_help)
    g.add_argument("--device", type=str, default="auto", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--seed", type=int, default=1, help="random seed (original: 1)")
    g.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels (torch.use_deterministic_algorithms, cuDNN deterministic, no "
                        "cudnn.benchmark); needed for a bit-exact --resume on a GPU")
    g.add_argument("--allow_tf32", action="store_true",
                   help="let fp32 matmuls and cuDNN convolutions use TF32 on Ampere and newer GPUs (faster, ~1e-3 "
                        "relative error; on a CPU oneDNN may then use TF32 matmuls where the CPU has them); default "
                        "off, so fp32 means fp32 on every GPU (torch's own default lets cuDNN use TF32)")
    g.add_argument("--resume", type=str, default=None,
                   help=f"run directory or {TRAINING_STATE_NAME} to continue (at the epoch after the last "
                        "finished one), or 'auto' (for requeued / restarted jobs: the same command every time): "
                        "continue <output_dir>/<exp_name> from its training state if it has one, exit 0 if it "
                        "already finished its --epochs, else start it; a directory of a run killed before its "
                        "first checkpoint (no training state) is started over. The result equals an uninterrupted "
                        "run's bit for bit on the CPU, and on a GPU only with --deterministic (CUDA's atomic adds "
                        "otherwise reorder sums)")
    g.add_argument("--overwrite", action="store_true",
                   help="delete an existing run of the same name and start over (without it, a non-empty run "
                        "directory is never overwritten)")
    g.add_argument("--num_workers", type=int, default=4, help=num_workers_help)
    g.add_argument("--amp", type=str, default="none", choices=["none", "bf16", "fp16"],
                   help="mixed precision: autocast on CUDA or the CPU (original: fp32)")
    g.add_argument("--sync_bn", action="store_true",
                   help="under torchrun, BatchNorm statistics over the batches of all ranks (models/sync_bn.py), "
                        "so results do not depend on the GPU count (default: per-rank statistics, as the "
                        "original's DDP fork); no effect in a single process")
    g.add_argument("--grad_clip", type=float, default=None, help="clip the gradient norm (original: none)")
    g.add_argument("--max_steps_per_epoch", type=int, default=None, help="cap the steps per epoch (quick runs)")
    g.add_argument("--stop_after", type=int, default=None,
                   help="stop cleanly after this many epochs in this invocation (time-limited jobs); continue "
                        "later with --resume (or run the same command again with --resume auto)")
    g.add_argument("--save_every", type=int, default=0,
                   help="also keep the weights of every epoch E with E %% N == 0 (0-based, as the original's "
                        "--save_freq, which defaulted to 50); 0 = only best and last")
    g.add_argument("--print_freq", type=int, default=50,
                   help="log every N steps (original: 50); the loss is read, and a NaN/inf found, only every N steps "
                        "and at the epoch end, so a non-finite loss stops training up to N steps late (1 = every "
                        "step, 0 = epoch end only)")
    g.add_argument("--no_progress", action="store_true",
                   help="no progress display (a tqdm bar on a terminal, a few plain lines in a log)")
    g.add_argument("--wandb", type=str, default="disabled", choices=["online", "offline", "disabled"],
                   help="Weights & Biases logging (the original always logged online)")
    g.add_argument("--wandb_project", type=str, default="CrossPoint", help="wandb project")


Rule = tuple[Callable[[Any], bool], str]
AT_LEAST_0: Rule = (lambda v: v >= 0, "at least 0")
AT_LEAST_1: Rule = (lambda v: v >= 1, "at least 1")
AT_LEAST_2: Rule = (lambda v: v >= 2, "at least 2")
POSITIVE: Rule = (lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
NON_NEGATIVE: Rule = (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
FRACTION: Rule = (lambda v: 0.0 < v < 1.0, "in (0, 1)")
PROBABILITY: Rule = (lambda v: 0.0 <= v < 1.0, "in [0, 1)")


def check_args(prog: str, args: argparse.Namespace, rules: Mapping[str, Rule]) -> None:
    """Validate flags before anything is created: ``rules`` plus the rules of the flags every training script
    shares (epochs, batch_size, num_points, k, emb_dims, lr, wd and the run arguments). The evaluation scripts
    and embed.py use it too: a shared flag they do not have is simply absent.

    A flag that is None (not given) is skipped; a list-valued flag (``nargs``) is checked element by element.
    Raises SystemExit naming the first bad flag, its value and what it must be.
    """
    shared = {"epochs": AT_LEAST_1, "batch_size": AT_LEAST_1, "num_points": AT_LEAST_1, "k": AT_LEAST_1,
              "emb_dims": AT_LEAST_1, "lr": POSITIVE, "wd": NON_NEGATIVE, "stop_after": AT_LEAST_1,
              "max_steps_per_epoch": AT_LEAST_1, "num_workers": AT_LEAST_0, "save_every": AT_LEAST_0,
              "print_freq": AT_LEAST_0, "grad_clip": POSITIVE}
    for name, (ok, must) in {**shared, **rules}.items():
        value = getattr(args, name, None)
        several = isinstance(value, (list, tuple))
        bad = [v for v in (value if several else [value]) if v is not None and not ok(v)]
        if bad:
            raise SystemExit(f"{prog}: --{name} must be {must}{' (each value)' if several else ''}, got {bad[0]}.")
    if getattr(args, "resume", None) and getattr(args, "overwrite", False):
        raise SystemExit(f"{prog}: --resume continues a run and --overwrite deletes it; pass only one.")
    login = wandb_login_problem(getattr(args, "wandb", "disabled"))
    if login is not None:
        raise SystemExit(f"{prog}: {login}")


def check_batch(prog: str, batch_size: int, world_size: int, why_two: str) -> None:
    """The global batch must split evenly over the DDP ranks, with at least 2 samples per rank."""
    if batch_size % world_size:
        raise SystemExit(f"{prog}: --batch_size {batch_size} (global) is not divisible by the {world_size} DDP "
                         "processes.")
    if batch_size // world_size < 2:
        raise SystemExit(f"{prog}: {why_two} needs at least 2 samples per batch per process; raise --batch_size.")


def check_points_for_k(prog: str, num_points: int | None, k: int | None, k_source: str | None = None) -> None:
    """DGCNN takes the k nearest neighbours among a cloud's points: it needs num_points >= k.

    ``k_source`` says where a k that was not given as ``--k`` came from (e.g. "checkpoint meta").
    """
    if num_points is not None and k is not None and num_points < k:
        what = f"--k {k}" if k_source is None else f"k={k} (from {k_source})"
        raise SystemExit(f"{prog}: --num_points {num_points} is smaller than {what}; DGCNN needs at least k "
                         "points per cloud.")


def resolve_resume_path(path: str | os.PathLike, prog: str) -> Path:
    """A run directory, its checkpoints/ folder or the state file itself -> the training-state file.

    Raises SystemExit with a message naming every place looked at when none holds the state file.
    """
    p = Path(path)
    candidates = (p, p / TRAINING_STATE_NAME, p / "checkpoints" / TRAINING_STATE_NAME)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise SystemExit(
        f"{prog}: --resume {path}: no {TRAINING_STATE_NAME} found (looked at {', '.join(map(str, candidates))}). "
        "Pass the run directory of a previous run of the same script."
    )


def json_config(args: argparse.Namespace, device: torch.device, info: distributed.DistInfo,
                extra: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved configuration: every flag, the device, the process count, versions and ``extra``.

    Forced to plain JSON types, so ``torch.load(weights_only=True)`` reads it back from a training state.
    """
    cfg = dict(vars(args))
    cfg.update(resolved_device=str(device), world_size=info.world_size,
               batch_size_per_rank=args.batch_size // info.world_size, torch_version=str(torch.__version__),
               python_version=platform.python_version(), **extra)
    return json.loads(json.dumps(cfg, default=str))


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------


class StopRequested(Exception):
    """A stop signal (SIGTERM) reached some rank; every rank raises it at the same point.

    Attributes:
        signal_name: "SIGTERM".
        epoch: the epoch that was running or about to start (0-based).
        step: the steps of ``epoch`` already done, or None when the stop came between epochs.
    """

    def __init__(self, signal_name: str, epoch: int, step: int | None) -> None:
        self.signal_name, self.epoch, self.step = signal_name, epoch, step
        where = f"epoch {epoch} after {step} step(s)" if step is not None else f"before epoch {epoch}"
        super().__init__(f"stopped by {signal_name} at {where}")


class Run:
    """One training run: its directory, config, logger, resume state, per-epoch checkpoints and stop rules.

    Args:
        prog: the script name used in messages ("train_crossmodal.py").
        args: the parsed flags (run arguments from :func:`add_run_arguments` plus the script's own).
        info: this process's place in the (possibly distributed) job.
        device: the training device.
        default_name: run name when ``--exp_name`` is not given and nothing is resumed.
    """

    def __init__(self, prog: str, args: argparse.Namespace, info: distributed.DistInfo, device: torch.device,
                 default_name: str) -> None:
        self.prog, self.args, self.info, self.device = prog, args, info, device
        self.auto = args.resume == "auto"
        self.resume_path = resolve_resume_path(args.resume, prog) if args.resume and not self.auto else None
        resumed_dir = self.resume_path.parent.parent if self.resume_path is not None else None
        if args.exp_name is None:
            self.run_dir = resumed_dir if resumed_dir is not None else Path(args.output_dir) / default_name
        else:
            self.run_dir = Path(args.output_dir) / args.exp_name
        args.exp_name = self.run_dir.name
        # What this invocation creates (main rank): removed again when it fails before its first checkpoint.
        self._created_top = _first_missing(self.run_dir) if info.is_main else None
        self._lock = DirLock(self.run_dir / RUN_LOCK_NAME, f"another {prog} run") if info.is_main else None
        self._notes: list[str] = []
        self._stop_signal: int | None = None
        self._old_handlers: dict[int, Any] = {}
        self.start_over = bool(args.overwrite)
        self.already_finished = False
        try:
            self._take_run_dir(resumed_dir)
        except BaseException:
            self.release()
            raise
        seed_everything(args.seed)
        self.precision_policy = configure_backends(device, deterministic=args.deterministic,
                                                   allow_tf32=args.allow_tf32, amp=args.amp)
        self.generators: dict[str, torch.Generator] = {}
        self.models: dict[str, nn.Module] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.scaler: torch.amp.GradScaler | None = None
        self.config: dict[str, Any] = {}
        self.logger = Logger(self.run_dir, enabled=False)
        self.start_epoch = 0
        self.best_metric = -math.inf
        self.best_epoch = -1
        self.history: list[dict[str, Any]] = []
        self.steps_per_epoch = 0
        self._epoch_start = time.perf_counter()

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def is_main(self) -> bool:
        return self.info.is_main

    def _take_run_dir(self, resumed_dir: Path | None) -> None:
        """Lock the run directory (main rank), decide what --resume auto does, refuse what must be refused, and
        install the SIGTERM handler. Under DDP the main rank decides and tells the others."""
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise SystemExit(f"{self.prog}: the run directory {self.run_dir} is a file; choose another "
                             "--exp_name or --output_dir.")
        refusal: str | None = None
        if self._lock is not None:
            try:
                self._lock_and_decide(resumed_dir)
            except SystemExit as err:
                if self.info.world_size == 1:
                    raise
                refusal = str(err.code)
        if self.info.world_size > 1:
            refusal, self.resume_path, self.start_over, self.already_finished = distributed.broadcast_object(
                (refusal, self.resume_path, self.start_over, self.already_finished))
            if refusal is not None:
                raise SystemExit(refusal)
        if threading.current_thread() is threading.main_thread():
            self._old_handlers[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_signal)

    def _lock_and_decide(self, resumed_dir: Path | None) -> None:
        """Main rank: take the lock, resolve --resume auto, refuse a run directory that must not be touched."""
        try:
            note = self._lock.acquire()
        except LockHeldError as err:
            raise SystemExit(f"{self.prog}: {err}") from None
        self._notes += [note] if note else []
        if self.auto:
            self._decide_auto()
        self._check_run_dir(resumed_dir)

    def _on_signal(self, signum: int, frame: Any) -> None:
        """Only note the signal: the step in progress finishes and the ranks agree on where to stop."""
        self._stop_signal = signum

    def _decide_auto(self) -> None:
        """--resume auto: continue from the training state, report a finished run, or start (over)."""
        state = self.ckpt_dir / TRAINING_STATE_NAME
        if state.is_file():
            self.resume_path = state
            done = read_json(self.run_dir / FINISHED_NAME) or {}
            epochs = done.get("epochs") if isinstance(done, dict) else None
            self.already_finished = isinstance(epochs, int) and epochs >= self.args.epochs
            return
        held = self._held()
        ours = set(LOG_FILES) | {"config.json", "checkpoints", "wandb"}
        if held and ("config.json" in held or set(held) <= ours):
            self.start_over = True
            self._notes.append(f"--resume auto: {self.run_dir} held no training state (a run stopped before its "
                               f"first checkpoint: {', '.join(held[:6])}); started over.")

    def _held(self) -> list[str]:
        """The names in the run directory besides the lock."""
        if not self.run_dir.is_dir():
            return []
        return sorted(p.name for p in self.run_dir.iterdir() if p.name != RUN_LOCK_NAME)

    def _check_run_dir(self, resumed_dir: Path | None) -> None:
        """A non-empty run directory is continued (--resume), deleted (--overwrite) or refused."""
        same = resumed_dir is not None and resumed_dir.resolve() == self.run_dir.resolve()
        if same or self.start_over or (self.auto and self.resume_path is not None):
            return
        held = self._held()
        if held:
            raise SystemExit(
                f"{self.prog}: the run directory {self.run_dir} already holds a run ({', '.join(held[:6])}"
                f"{', ...' if len(held) > 6 else ''}). Nothing was changed. Continue it with --resume "
                f"{self.run_dir}, start it over with --overwrite (deletes it), or choose another --exp_name."
                + (" (--resume auto starts over only a directory of this project's run files.)" if self.auto else "")
            )

    # -- building -----------------------------------------------------------------------------

    def train_loader(self, dataset: Dataset, batch_size: int, num_workers: int,
                     persistent_workers: bool = False) -> DataLoader:
        """The shuffled training loader: ``batch_size`` is the global batch, split over the DDP ranks.

        ``drop_last`` is on (a one-sample batch breaks BatchNorm; NT-Xent needs >= 2 samples). Shuffling
        and worker seeds come from a generator whose state is saved with every checkpoint.
        """
        info = self.info
        sampler = (DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                      seed=self.args.seed, drop_last=True) if info.is_distributed else None)
        generator = make_generator(self.args.seed + info.rank)
        self.generators["train_loader"] = generator
        loader = DataLoader(dataset, batch_size=batch_size // info.world_size, shuffle=sampler is None,
                            sampler=sampler, drop_last=True,
                            **loader_kwargs(self.device, num_workers, generator, persistent_workers))
        if len(loader) == 0:
            raise SystemExit(f"{self.prog}: the training set under --data_root {self.args.data_root} has "
                             f"{len(dataset)} samples, fewer than --batch_size {batch_size}; no full batch "
                             "(drop_last=True) could be formed. Lower --batch_size.")
        self.steps_per_epoch = min(len(loader), self.args.max_steps_per_epoch or len(loader))
        return loader

    def start_or_resume(self, models: Mapping[str, nn.Module], optimizer: torch.optim.Optimizer, scheduler: Any,
                        scaler: torch.amp.GradScaler | None, config_extra: Mapping[str, Any],
                        model_settings: Sequence[str]) -> None:
        """Write config.json and open the logs, or restore the training state with ``--resume``.

        Args:
            models: name -> module (unwrapped) whose weights the training state holds.
            optimizer, scheduler, scaler: their states are saved and restored.
            config_extra: further config entries (sizes, resolved model arguments, data kind, ...).
            model_settings: config keys that fix the models' shapes; resuming with other values is refused
                with a message naming them.
        """
        self.models, self.optimizer, self.scheduler, self.scaler = dict(models), optimizer, scheduler, scaler
        self.config = json_config(self.args, self.device, self.info,
                                  {"precision_policy": self.precision_policy, **config_extra})
        state = None
        if self.resume_path is not None:
            state = self._restore(model_settings)
        elif self.info.world_size > 1:
            # DDP broadcasts rank 0's initial weights; the augmentations must differ between ranks.
            seed_everything(self.args.seed + self.info.rank)
        if self.is_main:
            if self.start_over:
                self._clear_run_dir()
            (self.run_dir / FINISHED_NAME).unlink(missing_ok=True)  # written again when the run finishes
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            removed = remove_stale_tmp_files(self.ckpt_dir) + remove_stale_tmp_files(self.run_dir)
            cut = self._cut_logs(state) if state is not None else []
            self.logger = Logger(self.run_dir, wandb_mode=self.args.wandb, config=self.config,
                                 project=self.args.wandb_project, run_name=self.args.exp_name)
            atomic_write_text(self.run_dir / "config.json", json.dumps(self.config, indent=2, sort_keys=True) + "\n")
            for line in self._notes:
                self.logger.info(line)
            for path in removed:
                self.logger.info(f"Removed {path}, a partial file left by an interrupted run.")
            for line in cut:
                self.logger.info(line)
            if self.args.amp != "none" and self.device.type not in ("cuda", "cpu"):
                self.logger.info(f"--amp {self.args.amp} is ignored on {self.device.type}: training in full precision.")
            if self.args.sync_bn:
                self.logger.info(f"--sync_bn: BatchNorm statistics over all {self.info.world_size} ranks."
                                 if self.info.is_distributed else
                                 "--sync_bn does nothing in a single process: BatchNorm already sees the whole batch.")
            if self.resume_path is not None:
                self.logger.info(f"Resumed from {self.resume_path}: continuing at epoch {self.start_epoch} of "
                                 f"{self.args.epochs}.")
                note = resume_exactness_note(self.device, self.args.deterministic)
                if note is not None:
                    self.logger.info(note)
        distributed.barrier()

    def _clear_run_dir(self) -> None:
        """Delete everything in the run directory except the lock (--overwrite, or --resume auto starting over)."""
        for name in self._held():
            path = self.run_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()

    def _restore(self, model_settings: Sequence[str]) -> dict[str, Any]:
        """Load the training state into the run and restore this rank's RNGs (exact continuation)."""
        path = self.resume_path
        try:
            state = load_training_state(path, models=self.models, optimizer=self.optimizer, scheduler=self.scheduler,
                                        scaler=self.scaler, map_location=self.device,
                                        check_config=lambda saved: self._check_settings(saved, model_settings))
        except CheckpointError as err:
            raise SystemExit(f"{self.prog}: --resume: {err}") from None
        except (RuntimeError, KeyError, ValueError) as err:
            raise SystemExit(
                f"{self.prog}: --resume: {path} does not fit the models built for this run ({_first_line(err)}). "
                "Resume with the same model settings as the saved run (see its config.json)."
            ) from None
        self._warn_config_changes(state.get("config") or {}, model_settings)
        self.start_epoch = int(state["epoch"]) + 1
        extra = state["extra"]
        self.best_metric = float(extra.get("best_metric", -math.inf))
        self.best_epoch = int(extra.get("best_epoch", -1))
        self.history = list(extra.get("history", []))
        rng = state["rng"]
        rng_list = rng if isinstance(rng, list) else [rng]
        if len(rng_list) == self.info.world_size:
            set_rng_state(rng_list[self.info.rank], self.generators)
        else:
            warnings.warn(f"{path} holds RNG states for {len(rng_list)} processes, this run has "
                          f"{self.info.world_size}; RNGs are re-seeded, so the continuation is not bit-exact.",
                          stacklevel=3)
            seed_everything(self.args.seed + 1000 * self.start_epoch + self.info.rank)
        return state

    def _check_settings(self, saved: Mapping[str, Any] | None, model_settings: Sequence[str]) -> None:
        """Refuse to resume when a shape-defining setting differs from the saved run's (before loading)."""
        saved = saved or {}
        now = self.config
        changed = [f"{name}: saved {saved[name]!r}, requested {now.get(name)!r}" for name in model_settings
                   if name in saved and saved[name] != now.get(name)]
        if changed:
            raise SystemExit(
                f"{self.prog}: --resume {self.resume_path}: the saved run was trained with other model settings "
                f"({'; '.join(changed)}). Resume with the saved settings (drop or fix those flags), or start a new "
                "run with another --exp_name."
            )

    def _warn_config_changes(self, saved: Mapping[str, Any], model_settings: Sequence[str]) -> None:
        ignore = _RESUME_FREE | set(model_settings)
        changed = {k: (saved[k], v) for k, v in self.config.items()
                   if k in saved and k not in ignore and saved[k] != v}
        if changed and self.is_main:
            warnings.warn(f"Resuming with settings that differ from the saved run (saved -> now): {changed}",
                          stacklevel=4)

    def _cut_logs(self, state: Mapping[str, Any]) -> list[str]:
        """Cut log.txt / metrics.jsonl back to their size when the restored state was saved.

        Whatever a killed run logged after its last checkpoint (step records, an epoch line whose
        checkpoint was never written) is redone by the resumed run, so keeping it would repeat records.
        """
        offsets = state["extra"].get("log_offsets") or {}
        clean = read_json(self.ckpt_dir / CLEAN_EXIT_NAME)
        if isinstance(clean, dict) and clean.get("epoch") == state["epoch"] and isinstance(clean.get("sizes"), dict):
            offsets = {**offsets, **clean["sizes"]}  # a later invocation ended cleanly: nothing to cut
        notes = []
        for name in LOG_FILES:
            path, size = self.run_dir / name, offsets.get(name)
            if size is None or not path.is_file():
                continue
            actual = path.stat().st_size
            if actual > size:
                with open(path, "r+b") as f:
                    f.truncate(size)
                notes.append(f"Removed {actual - size} bytes that the interrupted run logged to {name} after its "
                             f"last checkpoint (epoch {state['epoch']}).")
            elif actual < size:
                notes.append(f"{path} is shorter than when the last checkpoint was written; left as it is.")
        return notes

    # -- the epoch loop -----------------------------------------------------------------------

    def remaining_epochs(self) -> Iterator[int]:
        """The epochs this invocation trains (``--stop_after`` limits them).

        Raises StopRequested before an epoch when a stop signal reached some rank (all ranks agree: one
        collective per epoch under DDP).
        """
        args = self.args
        end = args.epochs if args.stop_after is None else min(args.epochs, self.start_epoch + args.stop_after)
        if self.start_epoch >= args.epochs:
            self.logger.info(f"Nothing to do: the run already finished its {args.epochs} epochs.")
        for epoch in range(self.start_epoch, end):
            if self._stop_agreed():
                raise StopRequested(self._signal_name(), epoch, None)
            yield epoch

    def _stop_agreed(self) -> bool:
        """Whether a stop signal reached this or any other rank (a collective under DDP: call on every rank).
        Every rank then knows the signal's number."""
        local = self._stop_signal or 0
        if self.info.world_size > 1:
            local = distributed.all_reduce_max_int(local, device=self.device)
            self._stop_signal = local or None
        return bool(local)

    def _signal_name(self) -> str:
        return signal.Signals(self._stop_signal).name if self._stop_signal is not None else "a stop signal"

    @property
    def finished(self) -> bool:
        """All ``--epochs`` are done (history has the last epoch)."""
        return bool(self.history) and self.history[-1]["epoch"] + 1 >= self.args.epochs

    def epoch_meter(self, loader: DataLoader, epoch: int) -> EpochMeter:
        """The :class:`util.epoch.EpochMeter` of ``epoch`` with this run's optimizer, logger and flags; starts the
        epoch's clock (``time_s`` in :meth:`log_epoch`). Leaving its block after a stop signal raises
        :class:`StopRequested` on every rank."""
        args = self.args
        self._epoch_start = time.perf_counter()
        return _RunEpochMeter(self, loader, epoch, self.optimizer, self.device, self.logger if self.is_main else None,
                              max_steps=args.max_steps_per_epoch, log_every=args.print_freq,
                              progress=self.is_main and not args.no_progress, world_size=self.info.world_size,
                              desc=f"epoch {epoch}/{args.epochs}", should_stop=lambda: self._stop_signal is not None)

    def stop_after_step(self, epoch: int, steps: int) -> None:
        """Raise :class:`StopRequested` (every rank learns the signal's name first)."""
        if self.info.world_size > 1:
            self._stop_agreed()
        raise StopRequested(self._signal_name(), epoch, steps)

    def update_best(self, epoch: int, metric: float | None, ties_replace: bool,
                    best_if_unmeasured: bool = False) -> bool:
        """Decide whether ``epoch`` is the best so far (:func:`is_better`); the same answer on every rank.

        Args:
            epoch: the finished epoch.
            metric: the selection metric measured this epoch on the main rank (higher is better), or None
                when nothing was measured.
            ties_replace: a later epoch with an equal metric replaces the kept one (``>=``) instead of ``>``.
            best_if_unmeasured: with no metric, the epoch counts as best (best = last, e.g. without a probe).
        Returns:
            True when the epoch is the new best (``best_metric`` / ``best_epoch`` are updated).
        """
        is_best = best_if_unmeasured if metric is None else is_better(metric, self.best_metric, ties_replace)
        best_metric, best_epoch = self.best_metric, self.best_epoch
        if is_best:
            best_metric = best_metric if metric is None else float(metric)
            best_epoch = epoch
        # The main rank decides (only it measures): one broadcast of the decision and its result.
        is_best, self.best_metric, self.best_epoch = distributed.broadcast_object(
            (bool(is_best), best_metric, best_epoch))
        return is_best

    def log_epoch(self, record: dict[str, Any], line: str, is_best: bool) -> None:
        """Append the finished epoch's ``record`` (with ``time_s`` since :meth:`epoch_meter`) to the history and,
        on the main rank, to metrics.jsonl; log ``line`` (with "[best]"). Call it before :meth:`save_checkpoint`:
        the training state then records log sizes that include this epoch, and a kill in between is undone on
        resume (the logs are cut back to the previous checkpoint)."""
        record["time_s"] = time.perf_counter() - self._epoch_start
        self.history.append(record)
        if self.is_main:
            self.logger.log({f"epoch/{k}": v for k, v in record.items()},
                            step=(record["epoch"] + 1) * self.steps_per_epoch)
            self.logger.info(line + (" [best]" if is_best else ""))

    def save_checkpoint(self, epoch: int, is_best: bool, weights: Mapping[str, tuple[nn.Module, WeightsMeta]]) -> None:
        """Write the finished epoch's weights and then the training state (main rank; every rank contributes its
        RNG state, so call it on every rank).

        Args:
            epoch: the finished epoch (0-based), already passed to :meth:`log_epoch`.
            is_best: what :meth:`update_best` returned for this epoch.
            weights: name -> (module, sidecar); written as ``<name>_last.pth``, ``<name>_best.pth`` when
                best, ``<name>_epoch<E>.pth`` per ``--save_every``.
        """
        rng_states = distributed.all_gather_object(get_rng_state(self.generators))
        if self.is_main:
            tags = ["last"] + (["best"] if is_best else [])
            if self.args.save_every and epoch % self.args.save_every == 0:
                tags.append(f"epoch{epoch}")
            for name, (module, meta) in weights.items():
                state = {k: v.detach().cpu() for k, v in distributed.unwrap(module).state_dict().items()}
                for tag in tags:
                    save_weights(state, self.ckpt_dir / f"{name}_{tag}.pth", meta)
            save_training_state(
                self.ckpt_dir / TRAINING_STATE_NAME, models=self.models, optimizer=self.optimizer, epoch=epoch,
                scheduler=self.scheduler, scaler=self.scaler, config=self.config,
                rng=rng_states if self.info.world_size > 1 else rng_states[0],
                extra={"best_metric": self.best_metric, "best_epoch": self.best_epoch, "history": self.history,
                       "log_offsets": self.logger.file_sizes()},
            )
        distributed.barrier()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        """A clean end writes ``finished.json`` when all --epochs are done and closes the run (log sizes, lock). A
        non-finite loss, a full disk or a stop signal become one clear message and an exit status (75 after a
        stop). A run that failed before its first checkpoint leaves no directory behind; a stop (SIGTERM, Ctrl-C)
        keeps what was written, as a kill would."""
        try:
            if exc is None:
                self.mark_finished()
                self.close()
                return
            self._explain(exc)
        except BaseException as err:
            stopped = isinstance(err, KeyboardInterrupt) or (
                isinstance(err, SystemExit) and err.code in (0, None, PREEMPTED_EXIT))
            if not stopped:
                self.discard_unstarted()
            raise
        finally:
            self.release()

    def _explain(self, exc: BaseException) -> None:
        """Turn a non-finite loss, a full disk or a stop into one clear message (logged) and SystemExit."""
        if isinstance(exc, NonFiniteLossError):
            last_good = self.ckpt_dir / TRAINING_STATE_NAME
            where = (f"The last good checkpoint is {last_good} (epoch {self.history[-1]['epoch']}); resume from "
                     f"it with --resume {self.run_dir} after fixing the cause." if self.history and last_good.is_file()
                     else "No checkpoint had been written yet.")
            self._fail(f"ERROR: training stopped: {exc}\nNo weights were written for the failing epoch. {where}", exc)
        elif isinstance(exc, DiskFullError):
            state = self.ckpt_dir / TRAINING_STATE_NAME
            kept = (f"The last complete training state, {state}, is intact; continue with --resume {self.run_dir} "
                    "once there is space." if state.is_file() else "No training state had been written yet.")
            self._fail(f"ERROR: training stopped: {exc}\n{kept}", exc)
        elif isinstance(exc, StopRequested):
            self._stopped(exc)
        raise exc

    def _stopped(self, err: StopRequested) -> None:
        """Log where the run stopped and what continues it; exit with PREEMPTED_EXIT on every rank."""
        state = self.ckpt_dir / TRAINING_STATE_NAME
        kept = (f"The training state of epoch {self.history[-1]['epoch']} ({state}) is complete"
                if self.history and state.is_file() else "No training state had been written yet")
        redo = f"; epoch {err.epoch} is redone from its start" if err.step is not None else ""
        msg = (f"Training {err}. {kept}{redo}. Exit status {PREEMPTED_EXIT}: run the same command with --resume "
               f"auto (or --resume {self.run_dir}) to continue; the continuation is exact.")
        if self.is_main:
            self.logger.info(msg)
        with contextlib.suppress(OSError):
            self.logger.close()
        raise SystemExit(PREEMPTED_EXIT) from err

    def _fail(self, msg: str, err: BaseException) -> None:
        try:
            self.logger.info(msg)
        except OSError:
            print(msg, file=sys.stderr, flush=True)  # the log itself could not be written (full disk)
        with contextlib.suppress(OSError):
            self.logger.close()
        raise SystemExit(msg) from err

    def close(self) -> None:
        """The clean end of an invocation: record the log sizes (see CLEAN_EXIT_NAME), close, release the lock."""
        sizes = self.logger.file_sizes()
        self.logger.close()
        if self.is_main and self.history and sizes:
            atomic_write_text(self.ckpt_dir / CLEAN_EXIT_NAME,
                              json.dumps({"epoch": self.history[-1]["epoch"], "sizes": sizes}) + "\n")
        self.release()

    def discard_unstarted(self) -> bool:
        """After a failure: delete what this invocation created when no checkpoint was written (a run that
        failed before its first checkpoint leaves nothing behind). A directory that existed before (``--resume``,
        ``--resume auto``, ``--overwrite`` of an existing run) is never deleted. Returns whether it deleted."""
        if self._created_top is None or not self.run_dir.is_dir() or (self.ckpt_dir.is_dir() and any(
                p.suffix in (".pt", ".pth") for p in self.ckpt_dir.iterdir())):
            return False
        with contextlib.suppress(OSError):
            self.logger.close()
        self._clear_run_dir()
        self.release()
        path = self.run_dir
        with contextlib.suppress(OSError):  # only empty folders, up to the first one this invocation made
            while True:
                path.rmdir()
                if path == self._created_top:
                    break
                path = path.parent
        return True

    def release(self) -> None:
        """Release the run directory's lock and restore the signal handlers (idempotent)."""
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        self._old_handlers = {}
        if self._lock is not None:
            self._lock.release()

    def mark_finished(self) -> None:
        """Write ``finished.json`` (main rank) when all --epochs are done and the script's final step returned:
        ``--resume auto`` then exits at once."""
        if self.is_main and self.finished:
            atomic_write_text(self.run_dir / FINISHED_NAME,
                              json.dumps({"epochs": self.args.epochs, "finished_at": time.time()}) + "\n")

    def nothing_to_do(self) -> dict[str, Any]:
        """For a run that already finished (``--resume auto`` after the end): say so; the results to return."""
        if self.is_main:
            print(f"{self.prog}: {self.run_dir} already finished its {self.args.epochs} epochs ({FINISHED_NAME}); "
                  "nothing to do.", flush=True)
        return {"run_dir": str(self.run_dir), "already_finished": True}

    def summary(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "history": self.history, "best_metric": self.best_metric,
                "best_epoch": self.best_epoch}


@contextlib.contextmanager
def open_process(prog: str, args: argparse.Namespace, validate: Callable[[argparse.Namespace, int], None]
                 ) -> Iterator[tuple[distributed.DistInfo, torch.device]]:
    """A training script's process: check the flags (``validate(args, world_size)``, before anything is written),
    pick the device, join the DDP job when started by torchrun; yields ``(info, device)``. Input-file errors
    become one line naming the file (util.fileio.user_errors); the process group is destroyed at the end.

    Run the training in a function called inside the block, so its models (and their DDP wrappers) are freed
    before the process group is destroyed.
    """
    env = distributed.distributed_env()
    validate(args, env.world_size)
    device = resolve_device(args.device, env.local_rank, env.world_size, prog)
    info = distributed.init_distributed(backend=distributed.backend_for(device))
    try:
        with user_errors(prog):
            yield info, device
    finally:
        distributed.cleanup()


def eval_run_dir(args: argparse.Namespace, default_name: str) -> Path:
    """``--eval``'s output folder: ``<output_dir>/<exp_name>``, or ``<output_dir>/<default_name>_eval``."""
    return Path(args.output_dir) / (args.exp_name or f"{default_name}_eval")


def write_eval_results(run_dir: Path, results: Mapping[str, Any]) -> None:
    """``--eval``: write ``results_eval.json`` in ``run_dir`` (call on the main rank)."""
    atomic_write_text(run_dir / "results_eval.json", json.dumps(results, indent=2) + "\n")


def is_better(metric: float, best: float, ties_replace: bool) -> bool:
    """Whether ``metric`` replaces the kept ``best`` (higher is better): ``>``, or ``>=`` when ``ties_replace``."""
    return metric >= best if ties_replace else metric > best


def every_n_epochs(epoch: int, n: int, epochs: int) -> bool:
    """Whether something done every ``n`` epochs (an evaluation, a probe) runs after ``epoch`` (0-based): each
    ``n``-th epoch and the last of ``epochs``."""
    return (epoch + 1) % n == 0 or epoch + 1 == epochs


def epoch_means(epoch: int, stats: Mapping[str, float], device: torch.device, prefix: str = "") -> dict[str, Any]:
    """An epoch's record from its :class:`util.epoch.EpochMeter` stats: ``epoch``, the loss and step metrics
    averaged over the DDP ranks (named ``prefix + name``; one all-reduce, call on every rank), ``lr`` and
    ``samples_per_s``."""
    means = distributed.all_reduce_mean({k: v for k, v in stats.items() if k not in _EPOCH_BOOKKEEPING},
                                        device=device)
    return {"epoch": epoch, **{prefix + k: v for k, v in means.items()}, "lr": stats["lr"],
            "samples_per_s": stats["samples_per_s"]}


class _RunEpochMeter(EpochMeter):
    """An EpochMeter whose block raises :class:`StopRequested` (after its stats are filled) when a stop signal
    ended the epoch early."""

    def __init__(self, run: Run, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.run = run

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        super().__exit__(exc_type, exc, tb)
        if exc is None and self.stop:
            self.run.stop_after_step(self.epoch, int(self.stats["steps"]))


def _first_missing(path: Path) -> Path | None:
    """The topmost folder of ``path``'s ancestors (``path`` included) that does not exist yet; None if it exists."""
    if path.exists():
        return None
    top = path
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    return top


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
