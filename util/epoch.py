"""The bookkeeping of one training epoch around the loop a training script writes itself (:class:`EpochMeter`):
the loss and metrics kept on the device and read at sync points only, the non-finite-loss guard
(:class:`NonFiniteLossError`), the stop agreement under DDP, the progress display, step logs and epoch means."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch.utils.data.distributed import DistributedSampler

from util import distributed
from util.progress import progress_bar

__all__ = ["EpochMeter", "NonFiniteLossError"]


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
        self.epoch, self.optimizer, self.device = epoch, optimizer, device
        self.logger, self.log_every = logger, log_every
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
