"""Shared pytest setup: torchvision import hook, the `slow` marker, and the tiny synthetic data set."""

import os
from pathlib import Path

import numpy as np
import pytest

import util.torchvision_compat

util.torchvision_compat.install()

REPO_ROOT = Path(__file__).resolve().parents[1]

# Keep the 2-core CI machine responsive: torch's intra-op threads compete with DataLoader workers.
os.environ.setdefault("WANDB_MODE", "disabled")


def gaussian_blobs(n_per_class: int, n_classes: int, dim: int, sep: float, seed: int):
    """Features (n_classes * n_per_class, dim) float32 around random class centres ``sep`` apart, labels (N,)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    centers = rng.normal(size=(n_classes, dim)) * sep
    return (centers[y] + rng.normal(size=(len(y), dim))).astype(np.float32), y


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory) -> Path:
    """The synthetic generator's `tiny` preset (seed 0), generated once per test session."""
    from datasets.synthetic.generator import generate

    root = tmp_path_factory.mktemp("tiny_data")
    generate(root, preset="tiny", seed=0, progress=False)
    return root


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: on the shared 2-core machine two threads spin against each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
