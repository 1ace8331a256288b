"""Optimizers of the fine-tuning recipes and gradient-norm clipping (with an fp16 GradScaler).

``build_optimizer``: ``sgd`` (momentum; DGCNN ``pytorch/main.py`` line 61), ``adam`` (line 64) and ``adamw``
(Point-MAE ``tools/builder.py`` lines 39-55). With ``no_decay_1d`` the parameters are split as Point-MAE's
``add_weight_decay`` does (builder.py lines 40-53): 1-D tensors (norm weights and biases), names ending in
``.bias`` and names containing ``token`` get weight decay 0, the rest ``weight_decay``; frozen parameters are
left out.

``clip_gradients``: ``clip_grad_norm_`` over the parameters (Point-MAE ``tools/runner_finetune.py`` line 158,
``norm_type=2``), after ``scaler.unscale_(optimizer)`` when a GradScaler is in use: the scaled gradients
would otherwise be clipped at ``max_norm * scale``.

``backward_step``: the backward pass and the optimizer step of one training step, as every training loop
writes it (plain or fp16 with a GradScaler, clipping in between).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["OPTIMIZERS", "decay_groups", "build_optimizer", "clip_gradients", "backward_step"]

OPTIMIZERS = ("sgd", "adam", "adamw")


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Point-MAE's two param groups: ``[{no-decay params, weight_decay 0}, {the rest, weight_decay}]``."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim == 1 or name.endswith(".bias") or "token" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def build_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float, momentum: float | None = None,
                    no_decay_1d: bool = False) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``model``'s trainable parameters.

    Args:
        name: ``sgd`` (with ``momentum``, no Nesterov, as DGCNN), ``adam`` or ``adamw`` (torch defaults for betas
            and eps, as both references; ``momentum`` is not used).
        no_decay_1d: split the parameters into :func:`decay_groups` (Point-MAE); else one group, all decayed.

    Raises:
        ValueError: unknown ``name``, or ``sgd`` without a momentum (recipe ``pointmae`` sets none).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    if name == "sgd" and momentum is None:
        raise ValueError("the sgd optimizer needs a momentum (--momentum; DGCNN's is 0.9)")
    if no_decay_1d:
        params: Iterable = decay_groups(model, weight_decay)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def clip_gradients(params: Iterable[torch.Tensor], max_norm: float, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler | None = None) -> torch.Tensor:
    """Clip the global L2 norm of the gradients of ``params`` to ``max_norm``; returns the norm before clipping.

    With ``scaler``, unscale ``optimizer``'s gradients first (once per step; ``scaler.step`` then does not
    unscale again). Call between ``backward`` and ``optimizer.step`` / ``scaler.step``.
    """
    if scaler is not None:
        scaler.unscale_(optimizer)
    return nn.utils.clip_grad_norm_(params, max_norm, norm_type=2.0)


def backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, params: Iterable[torch.Tensor],
                  max_norm: float | None, scaler: torch.amp.GradScaler | None = None) -> None:
    """``loss.backward()``, :func:`clip_gradients` when ``max_norm`` is set, ``optimizer.step()``. With a
    GradScaler (fp16): scaled backward, clipping after unscaling, ``scaler.step`` (skipped when the gradients
    overflowed) and ``scaler.update()``."""
    if scaler is None:
        loss.backward()
        if max_norm is not None:
            clip_gradients(params, max_norm, optimizer)
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        if max_norm is not None:
            clip_gradients(params, max_norm, optimizer, scaler)  # unscales first
        scaler.step(optimizer)
        scaler.update()
