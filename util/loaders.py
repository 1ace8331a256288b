"""DataLoader settings shared by the scripts (workers, pinned memory, seeded workers) and the seeded stratified
split that holds out a validation part."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from util.rng import seed_worker

__all__ = ["eval_loader", "loader_kwargs", "stratified_split"]


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
