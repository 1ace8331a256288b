"""The epoch loop of the training scripts, over a generic step function, to test util.epoch.EpochMeter.

``train_one_epoch`` below is the loop each training script writes (train_crossmodal.py, train_partseg.py,
train_cls.py): zero_grad, forward and loss, ``meter.update`` before the update, backward (through a GradScaler for
fp16), optional clipping, optimizer step, break after a stop. Only the forward is a parameter here
(``step_fn(batch) -> (loss, metrics)``), so the tests can count host syncs, inject NaNs and stops.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn

import train_crossmodal
from util.optim import backward_step
from util.epoch import EpochMeter


def train_one_epoch(step_fn: Callable[[Any], tuple[torch.Tensor, dict]], loader: Iterable[Any],
                    optimizer: torch.optim.Optimizer, device: torch.device, epoch: int, logger: Any = None,
                    scaler: torch.amp.GradScaler | None = None, max_steps: int | None = None, log_every: int = 50,
                    progress: bool = True, grad_clip_norm: float | None = None, world_size: int = 1,
                    desc: str | None = None, should_stop: Callable[[], bool] | None = None) -> dict[str, float]:
    """One epoch of ``step_fn`` over ``loader`` (see the module docstring); returns the meter's stats."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    meter = EpochMeter(loader, epoch, optimizer, device, logger, max_steps=max_steps, log_every=log_every,
                       progress=progress, world_size=world_size, desc=desc, should_stop=should_stop)
    with meter:
        for step, batch in enumerate(loader):
            if step == meter.n_steps:
                break
            optimizer.zero_grad(set_to_none=True)
            loss, metrics = step_fn(batch)
            meter.update(step, loss, metrics, batch_size=_batch_size(batch))
            backward_step(loss, optimizer, params, grad_clip_norm, scaler)
            if meter.stop:
                break
    return meter.stats


def _batch_size(batch: Any) -> int:
    """Size of dim 0 of the first tensor in ``batch`` (a tensor or a list/tuple of them)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    return next(int(t.shape[0]) for t in batch if isinstance(t, torch.Tensor))


def crosspoint_step(point_net: nn.Module, image_net: nn.Module | None, device: torch.device, amp: str,
                    temperature: float, gather_negatives: bool, channels_last: bool) -> Callable:
    """``batch -> (loss, parts)`` of train_crossmodal.forward_loss; with ``gather_negatives`` the shapes are
    compared across ranks at the first call only, as the script does once per invocation."""
    calls = {"n": 0}

    def step(batch: Any) -> tuple[torch.Tensor, dict]:
        calls["n"] += 1
        return train_crossmodal.forward_loss(point_net, image_net, batch, device, amp, temperature, gather_negatives,
                                             channels_last, check_shapes=calls["n"] == 1)

    return step


def toy_problem(seed: int = 0) -> tuple[torch.utils.data.DataLoader, nn.Module, torch.optim.Optimizer]:
    """A float64 linear regression: (loader of 8 batches of (x (8, 4), y (8, 1)), model, SGD)."""
    torch.manual_seed(seed)
    x = torch.randn(64, 4, dtype=torch.float64)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]], dtype=torch.float64)  # (64, 1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    model = nn.Linear(4, 1).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    return loader, model, opt
