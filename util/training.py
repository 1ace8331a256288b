"""Generic training infrastructure: devices, AMP, seeding and RNG state, the epoch loop, resume state.

Nothing here knows about a particular model or dataset. The epoch loop takes a *step function*::

    def step_fn(batch) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
        ...move batch to the device, forward under autocast_context(...)...
        return loss, {"imid": imid, "cmid": cmid}

and does zero_grad / backward / (GradScaler) / optimizer.step, the non-finite-loss guard, the progress
display (util.progress), throughput, periodic logging and the epoch means. Callers put their models in train mode.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from util import distributed
from util.checkpoint import CheckpointError, atomic_torch_save, torch_load_checked
from util.progress import progress_bar

__all__ = [
    "AMP_MODES",
    "NonFiniteLossError",
    "autocast_context",
    "eval_loader",
    "get_rng_state",
    "load_training_state",
    "loader_kwargs",
    "make_generator",
    "make_grad_scaler",
    "make_optimizer",
    "resolve_device",
    "save_training_state",
    "seed_everything",
    "seed_worker",
    "set_rng_state",
    "stratified_split",
    "train_one_epoch",
]

AMP_MODES = ("none", "bf16", "fp16")
StepFn = Callable[[Any], "tuple[torch.Tensor, Mapping[str, float | torch.Tensor]]"]


class NonFiniteLossError(RuntimeError):
    """Raised by ``train_one_epoch`` when the loss is NaN or inf, before the optimizer step.

    Attributes:
        epoch: epoch index (0-based).
        step: step index inside the epoch (0-based).
        metrics: the loss and its components at that step (floats, possibly nan/inf).
    """

    def __init__(self, epoch: int, step: int, metrics: Mapping[str, float]) -> None:
        self.epoch = epoch
        self.step = step
        self.metrics = dict(metrics)
        parts = ", ".join(f"{k}={v:.6g}" for k, v in self.metrics.items())
        super().__init__(
            f"Non-finite loss at epoch {epoch}, step {step}: {parts}. The optimizer step was skipped "
            "and training stopped; try a lower learning rate, --amp none, or check the input data."
        )


# ----------------------------------------------------------------------------------------------
# Devices and mixed precision
# ----------------------------------------------------------------------------------------------


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """Turn a device name into a ``torch.device``.

    Args:
        name: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
        local_rank: the GPU index used for ``"auto"`` / ``"cuda"`` (torchrun's LOCAL_RANK).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"--device {name} was requested but CUDA is not available in this PyTorch build "
                f"({torch.__version__}); use --device cpu or --device auto."
            )
        if device.index is None:
            device = torch.device("cuda", local_rank)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("--device mps was requested but MPS is not available; use --device cpu.")
    return device


def _check_amp(amp: str) -> None:
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}.")


def autocast_context(device: torch.device, amp: str = "none") -> contextlib.AbstractContextManager:
    """Autocast for the forward pass: bf16/fp16 autocast on CUDA and on the CPU, ``nullcontext`` for fp32.

    Args:
        device: the device the forward pass runs on (``cuda`` or ``cpu``; other types run in fp32).
        amp: ``"none"``, ``"bf16"`` or ``"fp16"``.
    """
    _check_amp(amp)
    device_type = torch.device(device).type
    if amp == "none" or device_type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device_type, dtype=dtype)


def make_grad_scaler(device: torch.device, amp: str = "none") -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 autocast (CUDA or CPU), else None (bf16 and fp32 need no loss scaling)."""
    _check_amp(amp)
    device_type = torch.device(device).type
    if amp == "fp16" and device_type in ("cuda", "cpu"):
        return torch.amp.GradScaler(device_type)
    return None


# ----------------------------------------------------------------------------------------------
# Seeding and RNG state
# ----------------------------------------------------------------------------------------------


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); optionally request deterministic kernels.

    Args:
        seed: the seed.
        deterministic: also set ``torch.use_deterministic_algorithms(True, warn_only=True)``,
            cuDNN deterministic / no benchmark, and ``CUBLAS_WORKSPACE_CONFIG`` (process-global).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed NumPy and ``random`` from the worker's torch seed.

    torch already seeds each worker with ``base_seed + worker_id`` (``base_seed`` drawn from the
    loader's generator at every new iterator), so this makes every library's RNG follow it.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (for DataLoader shuffling and worker seeds)."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def get_rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Snapshot every RNG, in a form ``torch.load(weights_only=True)`` accepts.

    Args:
        generators: extra named generators to include (e.g. ``{"train_loader": g}``).

    Returns:
        dict with ``torch`` (uint8 tensor), ``cuda`` (list of uint8 tensors, empty without CUDA),
        ``numpy`` (dict of tensor/ints/float), ``python`` (nested lists), ``generators``.
    """
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),  # (624,) uint32 values
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "python": [int(py_version), [int(v) for v in py_internal], py_gauss],
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }


def set_rng_state(
    state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None
) -> None:
    """Restore RNGs from ``get_rng_state``'s output.

    Args:
        state: the snapshot.
        generators: named generators to restore in place; each name must be in the snapshot.
    """
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
        else:
            warnings.warn(
                f"Saved CUDA RNG state is for {len(cuda_states)} devices but "
                f"{torch.cuda.device_count()} are visible; CUDA RNG not restored.",
                stacklevel=2,
            )
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["name"],
            npst["keys"].numpy().astype(np.uint32),
            int(npst["pos"]),
            int(npst["has_gauss"]),
            float(npst["cached_gaussian"]),
        )
    )
    py_version, py_internal, py_gauss = state["python"]
    random.setstate((int(py_version), tuple(int(v) for v in py_internal), py_gauss))
    saved = state.get("generators", {})
    for name, g in (generators or {}).items():
        if name not in saved:
            raise KeyError(f"RNG snapshot has no generator {name!r} (has {sorted(saved)}).")
        g.set_state(saved[name].cpu())


# ----------------------------------------------------------------------------------------------
# The epoch loop
# ----------------------------------------------------------------------------------------------


def _batch_size(batch: Any) -> int:
    """Size of dim 0 of the first tensor found in ``batch`` (tensor, or nested list/tuple/dict)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if isinstance(batch, Mapping):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            n = _batch_size(item)
            if n > 0:
                return n
    return 0


def _to_float(value: float | torch.Tensor) -> float:
    return float(value.detach().float().item()) if isinstance(value, torch.Tensor) else float(value)


def train_one_epoch(
    step_fn: StepFn,
    loader: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    epoch: int,
    logger: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    max_steps: int | None = None,
    log_every: int = 50,
    progress: bool = True,
    grad_clip_norm: float | None = None,
    world_size: int = 1,
    desc: str | None = None,
) -> dict[str, float]:
    """Run one training epoch.

    For every batch: ``optimizer.zero_grad``, ``loss, metrics = step_fn(batch)``, a finiteness check
    of ``loss`` (agreed across ranks under DDP, so every rank stops together), backward (through
    ``scaler`` when given), optional gradient-norm clipping, ``optimizer.step``. Sets the epoch on a
    ``DistributedSampler`` so each epoch is shuffled differently.

    Args:
        step_fn: ``batch -> (loss scalar tensor, {name: float or 0-d tensor})``; runs the forward
            pass (including autocast) and moves the batch to the device.
        loader: iterable of batches (usually a DataLoader).
        optimizer: the optimizer.
        device: the training device (used to synchronise CUDA for honest timings).
        epoch: epoch index (0-based), used for ``set_epoch``, messages and the global step.
        logger: object with ``.log(metrics, step)`` (e.g. ``util.logger.Logger``) or None.
        scaler: GradScaler for fp16 autocast, or None.
        max_steps: stop after this many steps (quick runs); None = the whole loader.
        log_every: log running means every this many steps (0 disables step logging).
        progress: show a tqdm bar (pass False on non-main ranks).
        grad_clip_norm: clip the global gradient norm to this value; None = no clipping.
        world_size: number of processes; ``samples_per_s`` is reported for the whole job.
        desc: tqdm description (default ``"epoch {epoch}"``).

    Returns:
        This process's epoch means: ``loss`` and every metric from ``step_fn``, plus ``lr`` (of the
        first param group), ``samples_per_s`` (job-wide), ``steps`` and ``time_s``.

    Raises:
        NonFiniteLossError: the loss was NaN/inf on some rank; no optimizer step was taken for it.
    """
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    batch_sampler = getattr(loader, "batch_sampler", None)
    if batch_sampler is not None and isinstance(getattr(batch_sampler, "sampler", None), DistributedSampler):
        batch_sampler.sampler.set_epoch(epoch)

    try:
        n_steps = len(loader)  # type: ignore[arg-type]
    except TypeError:
        n_steps = None
    if max_steps is not None:
        n_steps = max_steps if n_steps is None else min(n_steps, max_steps)
    steps_per_epoch = n_steps or 0

    sums: dict[str, float] = {}
    samples = 0
    steps = 0
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sync = device.type == "cuda"
    bar = progress_bar(total=n_steps, desc=desc or f"epoch {epoch}", enabled=progress)
    start = time.perf_counter()
    window_start, window_samples = start, 0
    try:
        for step, batch in enumerate(loader):
            if max_steps is not None and step >= max_steps:
                break
            optimizer.zero_grad(set_to_none=True)
            loss, metrics = step_fn(batch)
            values = {"loss": _to_float(loss), **{k: _to_float(v) for k, v in metrics.items()}}
            finite = all(math.isfinite(v) for v in values.values())
            if not distributed.all_reduce_min_flag(finite, device=device):
                raise NonFiniteLossError(epoch, step, values)
            if scaler is not None:
                scaler.scale(loss).backward()
                if grad_clip_norm is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(params, grad_clip_norm)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if grad_clip_norm is not None:
                    nn.utils.clip_grad_norm_(params, grad_clip_norm)
                optimizer.step()

            n = _batch_size(batch)
            samples += n
            window_samples += n
            steps += 1
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            means = {k: v / steps for k, v in sums.items()}
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in means.items()}, refresh=False)
            if logger is not None and log_every and (step + 1) % log_every == 0:
                if sync:
                    torch.cuda.synchronize(device)
                now = time.perf_counter()
                logger.log(
                    {
                        **{f"train/{k}": v for k, v in values.items()},
                        "train/lr": optimizer.param_groups[0]["lr"],
                        "train/samples_per_s": window_samples * world_size / max(now - window_start, 1e-9),
                        "epoch": epoch,
                    },
                    step=epoch * steps_per_epoch + step + 1,
                )
                window_start, window_samples = now, 0
    finally:
        bar.close()
    if sync:
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    out = {k: v / max(steps, 1) for k, v in sums.items()}
    out.update(
        lr=float(optimizer.param_groups[0]["lr"]),
        samples_per_s=samples * world_size / max(elapsed, 1e-9),
        steps=float(steps),
        time_s=elapsed,
    )
    return out


# ----------------------------------------------------------------------------------------------
# Full training state for exact resume
# ----------------------------------------------------------------------------------------------

TRAINING_STATE_VERSION = 1
TRAINING_STATE_NAME = "training_state_last.pt"


def save_training_state(
    path: str | os.PathLike,
    *,
    models: Mapping[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    epoch: int,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    config: Mapping[str, Any] | None = None,
    rng: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Atomically write everything needed to resume after ``epoch`` (the last finished epoch).

    Args:
        path: destination file (written to a temp file and renamed).
        models: name -> module; wrappers (DDP, torch.compile) are stripped before ``state_dict``.
        optimizer, scheduler, scaler: their ``state_dict`` is stored (scheduler/scaler may be None).
        epoch: the last completed epoch (0-based); resume continues at ``epoch + 1``.
        config: resolved run configuration (JSON-like: str/int/float/bool/None/list/dict).
        rng: RNG snapshot(s) from ``get_rng_state`` (one dict, or a list with one per rank);
            None takes this process's snapshot.
        extra: further JSON-like or tensor data (best metric, history, ...).

    The file loads with ``torch.load(weights_only=True)``.
    """
    state = {
        "version": TRAINING_STATE_VERSION,
        "epoch": int(epoch),
        "models": {name: distributed.unwrap(m).state_dict() for name, m in models.items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng if rng is not None else get_rng_state(),
        "config": dict(config) if config is not None else None,
        "extra": dict(extra) if extra is not None else {},
    }
    atomic_torch_save(state, os.fspath(path))


def load_training_state(
    path: str | os.PathLike,
    *,
    models: Mapping[str, nn.Module],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    map_location: str | torch.device = "cpu",
    check_config: Callable[[Mapping[str, Any] | None], None] | None = None,
) -> dict[str, Any]:
    """Load a file written by ``save_training_state`` into the given objects (strict for models).

    RNG states are *not* restored here: the caller picks its rank's snapshot from ``state["rng"]``
    and calls ``set_rng_state`` at the point where the original run would continue.

    Args:
        check_config: called with the saved config before any weights are loaded (e.g. to refuse a
            resume whose model settings differ, with a message naming them).
    Returns:
        The whole state dict (``epoch``, ``config``, ``rng``, ``extra``, ...).
    Raises:
        FileNotFoundError / util.checkpoint.CheckpointError (one line naming the file): missing,
            unreadable or not a training state. KeyError / RuntimeError: a model's weights do not fit.
    """
    state = torch_load_checked(path, f"a training state ({TRAINING_STATE_NAME})", map_location=map_location)
    if not isinstance(state, dict) or state.get("version") != TRAINING_STATE_VERSION:
        raise CheckpointError(
            f"{path}: is not a training-state file (version {TRAINING_STATE_VERSION}); a weights-only "
            f"file (.pth) cannot resume training, pass {TRAINING_STATE_NAME} or its run directory."
        )
    if check_config is not None:
        check_config(state.get("config"))
    missing = sorted(set(models) - set(state["models"]))
    if missing:
        raise KeyError(f"{path} has no state for models {missing} (has {sorted(state['models'])}).")
    for name, model in models.items():
        distributed.unwrap(model).load_state_dict(state["models"][name], strict=True)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    return state


def make_optimizer(name: str, params: Iterable[nn.Parameter], lr: float, momentum: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """The fine-tuning optimizers of DGCNN / CrossPoint: "sgd" (with momentum) or "adam"."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose sgd or adam")


def eval_loader(dataset: Any, batch_size: int, device: torch.device, num_workers: int = 0) -> DataLoader:
    """Unshuffled, unaugmented loader in dataset order, keeping the last partial batch (evaluation).

    The original shuffled its test loaders, which changes nothing in eval mode but the order."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=False,
                      **loader_kwargs(device, num_workers, None))


def loader_kwargs(
    device: torch.device, num_workers: int, generator: torch.Generator | None, persistent_workers: bool = False
) -> dict[str, Any]:
    """Standard DataLoader keyword arguments: pinned memory on CUDA, seeded workers.

    ``persistent_workers`` keeps workers alive across epochs (faster epoch starts), but then the
    workers' RNGs are not re-seeded from ``generator`` each epoch, so a resumed run is exact only with
    ``persistent_workers=False`` (the default) or ``num_workers=0``.
    """
    kwargs: dict[str, Any] = {
        "num_workers": num_workers,
        "pin_memory": device.type == "cuda",
        "generator": generator,
        "worker_init_fn": seed_worker,
    }
    if num_workers > 0:
        kwargs["persistent_workers"] = persistent_workers
        kwargs["prefetch_factor"] = 2
    return kwargs


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices per class into (train, val); each class with >= 2 items puts at least one in each.

    Args:
        labels: (M,) integer labels.
        val_fraction: fraction of every class held out.
        seed: seed of the split (independent of the training RNG).

    Returns:
        (train_idx, val_idx), sorted int64 arrays.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"the validation fraction must be in (0, 1), got {val_fraction}.")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_val = int(round(val_fraction * len(idx)))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        else:
            n_val = 0
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
