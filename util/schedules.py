"""Per-epoch learning-rate schedules of the classification fine-tuning recipes (``train_cls.py --recipe``).

Each schedule is a pure function of the epoch, so a resumed run sets exactly the lr it would have had
(:class:`EpochLR` stores only the epoch and the base lrs).

``cosine`` (recipe ``dgcnn``): ``CosineAnnealingLR(opt, T_max=epochs, eta_min)`` of ``WangYueFt/dgcnn``
``pytorch/main.py`` (line 66), whose ``scheduler.step()`` is the first statement of each epoch (line 72):
epoch ``e`` trains at the cosine's value after ``e + 1`` steps, so epoch 0 already runs below the initial
lr and the last epoch runs at ``eta_min``.

``warmup_cosine`` (recipe ``pointmae``): timm 0.4.5's ``CosineLRScheduler`` as ``Pang-Yatian/Point-MAE``
``tools/builder.py`` (lines 67-75) builds it: ``t_initial=epochs, t_mul=1, lr_min=1e-6, decay_rate=0.1,
warmup_lr_init=1e-6, warmup_t=initial_epochs (10), cycle_limit=1, t_in_epochs=True`` (``warmup_prefix``
left False, no noise). Its value at ``t`` (timm ``cosine_lr.py`` ``_get_lr``): ``warmup_lr_init + t *
(lr - warmup_lr_init) / warmup_t`` for ``t < warmup_t``, else ``lr_min + (lr - lr_min) * (1 + cos(pi * t /
t_initial)) / 2`` (t not shifted by the warm-up), and ``lr_min`` from ``t >= t_initial``. The scheduler
sets ``warmup_lr_init`` when built and the runner calls ``scheduler.step(epoch)`` after each epoch
(``tools/runner_finetune.py`` lines 188-192), so epoch ``e`` trains at the value at ``max(e - 1, 0)``:
epochs 0 and 1 both at ``warmup_lr_init``.

``order="plain"`` instead trains epoch ``e`` at the schedule's value at ``t = e`` for either schedule (for
``cosine`` that is stepping after each epoch, this project's order before issue 22).

Standard library only (the optimizer is only read and written through ``param_groups``).
"""

from __future__ import annotations

import math
from typing import Any, Callable

__all__ = ["SCHEDULES", "LR_ORDERS", "cosine_annealing_lr", "warmup_cosine_lr", "schedule_time", "EpochLR",
           "build_schedule"]

SCHEDULES = ("cosine", "warmup_cosine")
LR_ORDERS = ("reference", "plain")

LrFn = Callable[[int, float], float]


def cosine_annealing_lr(t: int, base_lr: float, t_max: int, eta_min: float) -> float:
    """``CosineAnnealingLR``'s closed form after ``t`` steps: ``eta_min + (base_lr - eta_min) * (1 + cos(pi t /
    t_max)) / 2`` (torch computes it recursively; the two agree to rounding)."""
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * t / t_max)) / 2


def warmup_cosine_lr(t: int, base_lr: float, t_initial: int, lr_min: float, warmup_t: int,
                     warmup_lr_init: float) -> float:
    """timm 0.4.5 ``CosineLRScheduler._get_lr(t)`` with ``t_mul=1, cycle_limit=1, warmup_prefix=False``, in the
    same floating-point order (``decay_rate`` only acts after the single cycle, where the value is ``lr_min``)."""
    if t < warmup_t:
        return warmup_lr_init + t * ((base_lr - warmup_lr_init) / warmup_t)
    if t >= t_initial:
        return lr_min
    return lr_min + 0.5 * (base_lr - lr_min) * (1 + math.cos(math.pi * t / t_initial))


def schedule_time(schedule: str, order: str, epoch: int) -> int:
    """The schedule time ``t`` whose value epoch ``epoch`` (0-based) trains at, under ``order`` (module docstring)."""
    if order == "plain":
        return epoch
    if schedule == "cosine":
        return epoch + 1  # DGCNN main.py:72, scheduler.step() before the epoch's batches
    return max(epoch - 1, 0)  # Point-MAE runner_finetune.py:192, scheduler.step(epoch) after the epoch


class EpochLR:
    """Sets every param group's ``lr`` to ``lr_fn(epoch, base_lr)``; a scheduler with exact resume.

    The lr of epoch 0 is set on construction; call :meth:`step` after each epoch (or :meth:`set_epoch` before
    it). ``base_lr`` is each group's ``initial_lr`` (set from its ``lr`` when absent, as torch's schedulers do).

    Args:
        optimizer: any object with ``param_groups`` (a list of dicts with ``lr``).
        lr_fn: ``(epoch, base_lr) -> lr`` of that epoch.
    """

    def __init__(self, optimizer: Any, lr_fn: LrFn) -> None:
        self.optimizer, self.lr_fn = optimizer, lr_fn
        self.base_lrs = [float(group.setdefault("initial_lr", group["lr"])) for group in optimizer.param_groups]
        self.epoch = 0
        self._apply()

    def _apply(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_fn(self.epoch, base)

    def lr_at(self, epoch: int) -> list[float]:
        """The lr of every param group during ``epoch``."""
        return [self.lr_fn(epoch, base) for base in self.base_lrs]

    def set_epoch(self, epoch: int) -> None:
        """Set the lrs of ``epoch`` (0-based)."""
        self.epoch = int(epoch)
        self._apply()

    def step(self) -> None:
        """Move to the next epoch and set its lrs."""
        self.set_epoch(self.epoch + 1)

    def get_last_lr(self) -> list[float]:
        """The lrs now set (those of ``self.epoch``)."""
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the epoch and base lrs and set that epoch's lrs."""
        if len(state["base_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(f"scheduler state has {len(state['base_lrs'])} base lrs but the optimizer has "
                             f"{len(self.optimizer.param_groups)} param groups")
        self.base_lrs = [float(v) for v in state["base_lrs"]]
        self.set_epoch(state["epoch"])


def build_schedule(optimizer: Any, schedule: str, epochs: int, eta_min: float, warmup_epochs: int = 0,
                   warmup_lr: float = 0.0, order: str = "reference") -> EpochLR:
    """The per-epoch schedule of a recipe (module docstring).

    Args:
        optimizer: its groups' current ``lr`` (or ``initial_lr``) are the base lrs.
        schedule: ``cosine`` (DGCNN, ``eta_min`` = final lr, no warm-up) or ``warmup_cosine`` (Point-MAE's timm
            schedule: ``eta_min`` = ``lr_min``, ``warmup_epochs`` = ``warmup_t``, ``warmup_lr`` = ``warmup_lr_init``).
        epochs: the cosine length (``T_max`` / ``t_initial``).
        order: ``reference`` (each recipe's published stepping) or ``plain`` (epoch e at t = e).

    Raises:
        ValueError: unknown schedule or order, ``epochs < 1``, a warm-up on ``cosine``, or a warm-up not shorter
            than ``epochs``.
    """
    if schedule not in SCHEDULES or order not in LR_ORDERS:
        raise ValueError(f"unknown schedule {schedule!r} or order {order!r}; choose from {SCHEDULES} and {LR_ORDERS}")
    if epochs < 1 or warmup_epochs < 0:
        raise ValueError(f"epochs must be >= 1 and warm-up epochs >= 0, got {epochs} and {warmup_epochs}")
    if schedule == "cosine":
        if warmup_epochs:
            raise ValueError("the cosine schedule (recipe dgcnn) has no warm-up; use warmup_cosine for a warm-up")
        return EpochLR(optimizer, lambda e, base: cosine_annealing_lr(schedule_time("cosine", order, e), base,
                                                                      epochs, eta_min))
    if warmup_epochs >= epochs:
        raise ValueError(f"the warm-up ({warmup_epochs} epochs) must be shorter than the schedule ({epochs} epochs)")
    return EpochLR(optimizer, lambda e, base: warmup_cosine_lr(schedule_time("warmup_cosine", order, e), base,
                                                               epochs, eta_min, warmup_epochs, warmup_lr))
