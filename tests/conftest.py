"""Shared pytest setup: torchvision import hook, the `slow` marker, and the tiny synthetic data set."""

import os
from pathlib import Path

import pytest

import util.torchvision_compat

util.torchvision_compat.install()

REPO_ROOT = Path(__file__).resolve().parents[1]

# Keep the 2-core CI machine responsive: torch's intra-op threads compete with DataLoader workers.
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory) -> Path:
    """The synthetic generator's `tiny` preset (seed 0), generated once per test session."""
    from datasets.synthetic import generate

    root = tmp_path_factory.mktemp("tiny_data")
    generate(root, preset="tiny", seed=0, progress=False)
    return root
