"""Generic training infrastructure: devices, AMP, seeding and RNG state, the epoch's bookkeeping, resume state.

Nothing here knows about a particular model or dataset. Each training script writes its own epoch loop
(forward, loss, backward, optimizer step) inside an :class:`EpochMeter`, which keeps the loss and metrics on the
device, reads them at sync points only (the non-finite-loss guard, the stop agreement under DDP), and does the
progress display (util.progress), throughput, periodic logging and the epoch means.
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
    "EpochMeter",
    "NonFiniteLossError",
    "autocast_context",
    "configure_backends",
    "eval_loader",
    "get_rng_state",
    "load_training_state",
    "loader_kwargs",
    "make_generator",
    "make_grad_scaler",
    "resolve_device",
    "resume_exactness_note",
    "save_training_state",
    "seed_everything",
    "seed_worker",
    "set_rng_state",
    "stratified_split",
]

AMP_MODES = ("none", "bf16", "fp16")


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


class EpochMeter:
    """The bookkeeping of one training epoch, around a loop that the training script writes itself::

        with EpochMeter(loader, epoch, optimizer, device, ...) as meter:
            for step, batch in enumerate(loader):
                if step == meter.n_steps:
                    break
                loss, parts = ...forward...
                meter.update(step, loss, parts, batch_size)   # before the update, as a NaN must not be applied
                ...zero_grad, backward, optimizer step...
                if meter.stop:
                    break
        stats = meter.stats

    The loss and metrics stay on the device: :meth:`update` adds them to running sums without a host sync, and
    reads them (one transfer; under DDP one all-reduce, so every rank takes the same decision) only at every
    ``log_every``-th step and the last one. A non-finite value found there raises :class:`NonFiniteLossError`
    (up to ``log_every`` steps late). A stop request (``should_stop``, e.g. a SIGTERM) is agreed at the same
    sync points under DDP and after every step in one process; the loop then breaks after that step's update.
    Entering sets the epoch on a ``DistributedSampler``; leaving closes the progress display, reads what was not
    read yet and fills :attr:`stats`.

    Args:
        loader: the epoch's batches (usually a DataLoader).
        epoch: epoch index (0-based), for ``set_epoch``, messages and the global step.
        optimizer: its first param group's ``lr`` is logged and reported.
        device: the training device (where the sums live; CUDA is synchronised for timings).
        logger: object with ``.log(metrics, step)`` (``util.logger.Logger``) or None (non-main ranks).
        max_steps: cap on the steps (quick runs); None = the whole loader.
        log_every: sync, check and log every this many steps; 0 = only at the epoch end.
        progress: show the progress display (False on non-main ranks).
        world_size: number of processes; ``samples_per_s`` is job-wide.
        desc: progress description (default ``"epoch {epoch}"``).
        should_stop: a host-side flag asked as described above.

    Attributes:
        n_steps: the steps this epoch takes (None when the loader has no length and ``max_steps`` is None).
        stop: whether the loop must break after this step's update.
        stats: after the block, this process's epoch means: ``loss`` and every metric, plus ``lr``,
            ``samples_per_s`` (job-wide), ``steps``, ``time_s`` and ``stopped`` (1.0 after a stop).
    """

    def __init__(self, loader: Iterable[Any], epoch: int, optimizer: torch.optim.Optimizer, device: torch.device,
                 logger: Any = None, max_steps: int | None = None, log_every: int = 50, progress: bool = True,
                 world_size: int = 1, desc: str | None = None, should_stop: Callable[[], bool] | None = None) -> None:
        self.epoch, self.optimizer, self.device, self.logger, self.log_every = epoch, optimizer, device, logger, log_every
        self.world_size, self.asked = world_size, should_stop or (lambda: False)
        self.n_steps = _epoch_length(loader, epoch, max_steps)
        self._progress, self._desc = progress, desc or f"epoch {epoch}"
        self.stop = False
        self.stats: dict[str, float] = {}

    def __enter__(self) -> EpochMeter:
        self._sums_read: dict[str, float] = {}
        self._values = _StepStats(self.device)
        self._samples = self._steps = self._checked = 0  # checked: steps whose values the host has read
        self._bar = progress_bar(total=self.n_steps, desc=self._desc, enabled=self._progress)
        self._step_log = _StepLog(self.logger, self.optimizer, self.epoch, self.n_steps or 0, self.world_size)
        self._start = time.perf_counter()
        return self

    def update(self, step: int, loss: torch.Tensor, metrics: Mapping[str, float | torch.Tensor],
               batch_size: int) -> None:
        """Record step ``step``'s ``loss`` (0-d tensor) and ``metrics`` (0-d tensors or floats, the same names at
        every step) for ``batch_size`` samples; at a sync point read them (see the class). Call it before the
        optimizer step."""
        self._values.add(step, loss, metrics)
        self._samples += batch_size
        self._step_log.samples += batch_size
        due = self.log_every > 0 and (step + 1) % self.log_every == 0
        if due or step + 1 == self.n_steps:
            # The sync point, before this step's update; a stop request is agreed in the same collective.
            self._sums_read, last, self.stop = _read_checked(self._values, self.epoch, step, self.asked())
            self._checked = step + 1
            self._bar.set_postfix({k: f"{v / self._checked:.4f}" for k, v in self._sums_read.items()}, refresh=False)
            if due:
                self._step_log.log(step, last)
        elif self.world_size == 1:
            self.stop = self.asked()  # one process: nothing to agree on, no device read
        self._steps += 1
        self._bar.update(1)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            if exc is None and self._checked < self._steps:  # the loader ended early, has no length, or a stop
                self._sums_read, _, _ = _read_checked(self._values, self.epoch, self._steps)
        finally:
            self._bar.close()
        if exc is not None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - self._start
        self.stats = {k: v / max(self._steps, 1) for k, v in self._sums_read.items()}
        self.stats.update(lr=float(self.optimizer.param_groups[0]["lr"]), steps=float(self._steps), time_s=elapsed,
                          samples_per_s=self._samples * self.world_size / max(elapsed, 1e-9), stopped=float(self.stop))


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
