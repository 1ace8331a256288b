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
from util.optim import clip_gradients
from util.progress import progress_bar

__all__ = [
    "AMP_MODES",
    "NonFiniteLossError",
    "autocast_context",
    "configure_backends",
    "eval_loader",
    "get_rng_state",
    "load_training_state",
    "loader_kwargs",
    "make_generator",
    "make_grad_scaler",
    "make_optimizer",
    "resolve_device",
    "resume_exactness_note",
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
    """Raised by ``train_one_epoch`` when the loss or a step metric was NaN or inf.

    The values are read on the host only at sync points (every ``log_every`` = ``--print_freq`` steps and
    at the epoch end), so the stop comes up to that many steps late: the steps from ``step`` up to
    ``detected_step`` (excluded) were taken, the step at ``detected_step`` was not.

    Attributes:
        epoch: epoch index (0-based).
        step: the first step of the epoch (0-based) whose loss was non-finite, on any rank.
        metrics: the loss and its components at ``step`` on this rank (floats, possibly nan/inf); empty
            when only another rank saw the non-finite value.
        detected_step: the step whose sync point found it (``step`` itself when the check ran there).
    """

    def __init__(self, epoch: int, step: int, metrics: Mapping[str, float], detected_step: int | None = None) -> None:
        self.epoch = epoch
        self.step = step
        self.metrics = dict(metrics)
        self.detected_step = step if detected_step is None else detected_step
        parts = ", ".join(f"{k}={v:.6g}" for k, v in self.metrics.items()) or "on another process"
        when = ("its optimizer step was skipped" if self.detected_step == step else
                f"found {self.detected_step - step} step(s) later, so the optimizer steps of steps {step} to "
                f"{self.detected_step - 1} were taken (the loss is checked on the host every --print_freq steps "
                "and at the epoch end; --print_freq 1 checks before every step)")
        super().__init__(
            f"Non-finite loss at epoch {epoch}, step {step}: {parts}; {when}. Training stopped; try a lower "
            "learning rate, --amp none, or check the input data."
        )


# ----------------------------------------------------------------------------------------------
# Devices and mixed precision
# ----------------------------------------------------------------------------------------------


def resolve_device(name: str = "auto", local_rank: int = 0, world_size: int = 1, prog: str = "") -> torch.device:
    """Turn ``--device`` into a ``torch.device`` and select that GPU: the one place a CUDA device is set.

    Rules: ``auto`` is CUDA when available, else the CPU. Under torchrun (``world_size > 1``) every
    process uses the GPU of its local rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` and an explicit
    ``cuda:N`` with another index is refused. In a single process ``cuda`` is ``cuda:0`` and ``cuda:N``
    is GPU N. A CUDA device is made current (``torch.cuda.set_device``), so DataLoader pin-memory
    threads and NCCL use it.

    Args:
        name: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        local_rank: torchrun's LOCAL_RANK (0 in a single process).
        world_size: torchrun's WORLD_SIZE (1 in a single process).
        prog: the script name that prefixes the error message.

    Raises:
        SystemExit: one line naming ``--device`` when the device does not exist or breaks the rules above.
    """
    flag = f"{prog}: --device {name}" if prog else f"--device {name}"
    resolved = ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name
    try:
        device = torch.device(resolved)
    except RuntimeError:
        raise SystemExit(f"{flag}: not a device; use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise SystemExit(f"{flag}: MPS is not available on this machine; use --device cpu.")
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise SystemExit(f"{flag}: CUDA is not available (PyTorch {torch.__version__}, no usable GPU); use "
                         "--device cpu or --device auto.")
    if world_size > 1 and device.index is not None and device.index != local_rank:
        raise SystemExit(f"{flag}: under torchrun each process uses the GPU of its local rank (this one has "
                         f"LOCAL_RANK={local_rank}); pass --device cuda and choose GPUs with CUDA_VISIBLE_DEVICES.")
    index = local_rank if device.index is None else device.index
    count = torch.cuda.device_count()
    if index >= count:
        raise SystemExit(f"{flag}: GPU {index} does not exist; {count} CUDA device(s) are visible.")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def configure_backends(device: torch.device, deterministic: bool = False, allow_tf32: bool = False,
                       amp: str = "none") -> dict[str, Any]:
    """Set the process-wide precision and kernel policy in one place; returns it for the run's config.

    Policy: fp32 means fp32 on every GPU. TF32 is off unless ``allow_tf32`` (then cuBLAS matmuls and
    cuDNN convolutions may use TF32, ``float32_matmul_precision="high"``); otherwise
    ``float32_matmul_precision="highest"``, so the plain and fast EdgeConv agree on Ampere/Hopper as on
    the CPU. ``cudnn.benchmark`` is on (fixed 224 px images pick the fastest convolution once) unless
    ``deterministic``, which also asks for deterministic kernels (``torch.use_deterministic_algorithms`` with
    ``warn_only``, cuDNN deterministic, ``CUBLAS_WORKSPACE_CONFIG``).

    Args:
        device: the training device (the flags are process-global; on the CPU only the matmul precision acts).
        deterministic: deterministic kernels, no cuDNN autotuning.
        allow_tf32: let fp32 matmuls and convolutions use TF32 on GPUs that have it.
        amp: the autocast mode (``"none"``, ``"bf16"``, ``"fp16"``), recorded only.

    Returns:
        ``{"allow_tf32", "cudnn_benchmark", "float32_matmul_precision", "deterministic", "amp"}``, read back
        from torch after setting (``config.json``'s ``precision_policy``).
    """
    _check_amp(amp)
    # Differs from the original: it ran with torch's defaults (cuDNN convolutions in TF32 on Ampere+).
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    torch.set_float32_matmul_precision("high" if allow_tf32 else "highest")
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic:  # deterministic kernels (warn where none exists); process-global
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    return {
        "allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic": bool(deterministic),
        "amp": amp,
    }


def resume_exactness_note(device: torch.device, deterministic: bool) -> str | None:
    """The log line for a resume that is exact only up to floating-point non-determinism, else None.

    On CUDA the fast EdgeConv's backward (``scatter_add_``, index backward) and some cuDNN kernels use
    atomics, whose summation order varies from run to run; only ``--deterministic`` makes a resumed run
    equal an uninterrupted one bit for bit there. The CPU kernels are deterministic.
    """
    if torch.device(device).type != "cuda" or deterministic:
        return None
    return ("Resuming on CUDA without --deterministic: the continuation is exact only up to floating-point "
            "non-determinism (atomic adds in the EdgeConv backward and cuDNN); pass --deterministic for a "
            "bit-exact resume.")


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


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices). Deterministic kernels are ``configure_backends``'s."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
        state: the snapshot; its tensors may be on any device (a training state loaded with
            ``map_location="cuda"``): each is moved to the CPU before use.
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
            npst["keys"].cpu().numpy().astype(np.uint32),
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


class _StepStats:
    """An epoch's loss and step metrics, kept on the training device and read on the host at sync points only.

    Per step nothing leaves the device (no ``.item()``, no collective): the step's values as one (K,) vector,
    their running sums, and the first step with a non-finite value together with its values. :meth:`read`
    is the sync point: one MIN all-reduce of that step under DDP (so every rank takes the same decision)
    and one device-to-host transfer of everything.

    Args:
        device: the training device (float64 sums; float32 on MPS, which has no float64).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.dtype = torch.float32 if device.type == "mps" else torch.float64
        self.names: list[str] = []
        self.sums = self.last = self.bad_values = torch.zeros(0, dtype=self.dtype, device=device)  # (K,)
        self.bad_step = torch.full((), math.inf, dtype=self.dtype, device=device)  # () first non-finite step

    def _scalar(self, value: float | torch.Tensor) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            return value.detach().reshape(()).to(device=self.device, dtype=self.dtype)
        return torch.full((), float(value), dtype=self.dtype, device=self.device)

    def add(self, step: int, loss: torch.Tensor, metrics: Mapping[str, float | torch.Tensor]) -> None:
        """Add a step's ``loss`` (0-d tensor) and ``metrics`` (floats or 0-d tensors) without a host sync."""
        values = {"loss": loss, **metrics}
        if not self.names:
            self.names = list(values)
            self.sums = torch.zeros(len(values), dtype=self.dtype, device=self.device)  # (K,)
            self.bad_values = torch.full_like(self.sums, math.nan)  # (K,)
        elif list(values) != self.names:
            raise ValueError(f"the step function returned the metrics {list(values)} at step {step} but "
                             f"{self.names} before; it must return the same names at every step.")
        self.last = torch.stack([self._scalar(v) for v in values.values()])  # (K,)
        new_bad = torch.isinf(self.bad_step) & ~torch.isfinite(self.last).all()  # () bool, stays on the device
        self.bad_step = torch.where(new_bad, float(step), self.bad_step)
        self.bad_values = torch.where(new_bad, self.last, self.bad_values)
        self.sums = self.sums + self.last

    def read(self, stop: bool = False) -> tuple[dict[str, float], dict[str, float], int | None, dict[str, float],
                                                bool]:
        """The sync point. ``stop``: this rank was asked to stop (a signal), agreed in the same all-reduce.

        Returns (sums, the last step's values, the first non-finite step on any rank or None, this rank's values
        at that step (empty when only another rank had it), whether any rank asked to stop)."""
        first = torch.stack((self.bad_step, self.bad_step.new_tensor(-1.0 if stop else 0.0)))  # (2,) MIN-reduced
        distributed.all_reduce_min_(first)
        host = torch.cat((self.sums, self.last, self.bad_values, self.bad_step.reshape(1), first)).tolist()
        k = len(self.names)
        sums, last, bad = (dict(zip(self.names, host[i * k:(i + 1) * k])) for i in range(3))
        local_bad, first_bad, stop_agreed = host[3 * k], host[3 * k + 1], host[3 * k + 2] < 0
        if math.isinf(first_bad):
            return sums, last, None, {}, stop_agreed
        return sums, last, int(first_bad), bad if local_bad == first_bad else {}, stop_agreed


def _read_checked(stats: _StepStats, epoch: int, step: int,
                  stop: bool = False) -> tuple[dict[str, float], dict[str, float], bool]:
    """``stats.read(stop)``, raising NonFiniteLossError (the same on every rank) when a value was non-finite.
    Returns (sums, last step's values, whether any rank asked to stop)."""
    sums, last, bad_step, bad_values, stop_agreed = stats.read(stop)
    if bad_step is not None:
        raise NonFiniteLossError(epoch, bad_step, bad_values, detected_step=step)
    return sums, last, stop_agreed


def _epoch_length(loader: Iterable[Any], epoch: int, max_steps: int | None) -> int | None:
    """Set the epoch on a ``DistributedSampler`` (each epoch shuffled differently); the number of steps
    this epoch will take (None when the loader has no length and ``max_steps`` is None)."""
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
    return n_steps


class _StepLog:
    """Writes a step record at sync points: that step's values, the learning rate and the throughput since
    the previous record (the host just waited for the device, so the time is honest)."""

    def __init__(self, logger: Any, optimizer: torch.optim.Optimizer, epoch: int, steps_per_epoch: int,
                 world_size: int) -> None:
        self.logger, self.optimizer, self.epoch = logger, optimizer, epoch
        self.steps_per_epoch, self.world_size = steps_per_epoch, world_size
        self.start, self.samples = time.perf_counter(), 0

    def log(self, step: int, values: Mapping[str, float]) -> None:
        now = time.perf_counter()
        if self.logger is not None:
            self.logger.log({**{f"train/{k}": v for k, v in values.items()},
                             "train/lr": self.optimizer.param_groups[0]["lr"],
                             "train/samples_per_s": self.samples * self.world_size / max(now - self.start, 1e-9),
                             "epoch": self.epoch}, step=self.epoch * self.steps_per_epoch + step + 1)
        self.start, self.samples = now, 0


def _optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                    params: list[torch.Tensor], grad_clip_norm: float | None) -> None:
    """Backward of the scalar ``loss`` (through ``scaler`` when given), optional clipping, optimizer step."""
    if scaler is not None:
        scaler.scale(loss).backward()
        if grad_clip_norm is not None:
            clip_gradients(params, grad_clip_norm, optimizer, scaler)
        scaler.step(optimizer)
        scaler.update()
        return
    loss.backward()
    if grad_clip_norm is not None:
        clip_gradients(params, grad_clip_norm, optimizer)
    optimizer.step()


def train_one_epoch(step_fn: StepFn, loader: Iterable[Any], optimizer: torch.optim.Optimizer, device: torch.device,
                    epoch: int, logger: Any = None, scaler: torch.amp.GradScaler | None = None,
                    max_steps: int | None = None, log_every: int = 50, progress: bool = True,
                    grad_clip_norm: float | None = None, world_size: int = 1, desc: str | None = None,
                    should_stop: Callable[[], bool] | None = None) -> dict[str, float]:
    """Run one training epoch.

    For every batch: ``optimizer.zero_grad``, ``loss, metrics = step_fn(batch)``, backward (through ``scaler``),
    optional gradient-norm clipping, ``optimizer.step``. The loss and metrics stay on the device; the host reads
    them (one transfer; under DDP one all-reduce, so all ranks stop together) after the forward pass of every
    ``log_every``-th step and of the last one: a non-finite loss is found up to ``log_every`` steps late.

    Args:
        step_fn: ``batch -> (loss scalar tensor, {name: float or 0-d tensor})`` with the same names at every
            step; runs the forward pass (including autocast) and moves the batch to the device.
        loader, optimizer: an iterable of batches (usually a DataLoader) and the optimizer.
        device: the training device (where the running sums live; CUDA is synchronised for timings).
        epoch: epoch index (0-based), used for ``set_epoch``, messages and the global step.
        logger: object with ``.log(metrics, step)`` (e.g. ``util.logger.Logger``) or None.
        scaler: GradScaler for fp16 autocast, or None.
        max_steps: stop after this many steps (quick runs); None = the whole loader.
        log_every: sync, check the loss and log every this many steps; 0 = only at the epoch end.
        progress: show a tqdm bar (pass False on non-main ranks); its running means change at sync points.
        grad_clip_norm: clip the global gradient norm to this value; None = no clipping.
        world_size: number of processes; ``samples_per_s`` is reported for the whole job.
        desc: tqdm description (default ``"epoch {epoch}"``).
        should_stop: a host-side flag (a SIGTERM arrived), asked after every step in one process and at the
            sync points under DDP (in the same all-reduce), so every rank ends after the same step's update.

    Returns:
        This process's epoch means: ``loss`` and every metric from ``step_fn``, plus ``lr`` (of the first
        param group), ``samples_per_s`` (job-wide), ``steps``, ``time_s`` and ``stopped`` (1.0 after a stop).

    Raises:
        NonFiniteLossError: the loss was NaN/inf on some rank (naming its step and the step that found it).
    """
    n_steps = _epoch_length(loader, epoch, max_steps)
    stats = _StepStats(device)
    sums: dict[str, float] = {}
    samples = steps = checked = 0  # checked: steps whose values the host has read
    asked, stop = should_stop or (lambda: False), False
    params = [p for group in optimizer.param_groups for p in group["params"]]
    bar = progress_bar(total=n_steps, desc=desc or f"epoch {epoch}", enabled=progress)
    start = time.perf_counter()
    step_log = _StepLog(logger, optimizer, epoch, n_steps or 0, world_size)
    try:
        for step, batch in enumerate(loader):
            if max_steps is not None and step >= max_steps:
                break
            optimizer.zero_grad(set_to_none=True)
            loss, metrics = step_fn(batch)
            stats.add(step, loss, metrics)
            n = _batch_size(batch)
            samples, step_log.samples = samples + n, step_log.samples + n
            due = log_every > 0 and (step + 1) % log_every == 0
            if due or step + 1 == n_steps:
                # The sync point, before this step's update; a stop request is agreed in the same collective.
                sums, last, stop = _read_checked(stats, epoch, step, asked())
                checked = step + 1
                bar.set_postfix({k: f"{v / checked:.4f}" for k, v in sums.items()}, refresh=False)
                if due:
                    step_log.log(step, last)
            elif world_size == 1:
                stop = asked()  # one process: nothing to agree on, no device read
            _optimizer_step(loss, optimizer, scaler, params, grad_clip_norm)
            steps += 1
            bar.update(1)
            if stop:
                break
        if checked < steps:  # the loader ended before the expected last step, has no length, or a stop
            sums, _, _ = _read_checked(stats, epoch, steps)
    finally:
        bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    out = {k: v / max(steps, 1) for k, v in sums.items()}
    out.update(lr=float(optimizer.param_groups[0]["lr"]), samples_per_s=samples * world_size / max(elapsed, 1e-9),
               steps=float(steps), time_s=elapsed, stopped=float(stop))
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
