"""The classification sets of the frozen-feature and fine-tuning evaluations, by name.

``ModelNet40`` (``modelnet40``), ``ScanObjectNN`` (``scanobjectnn``, with a variant) and a prepared set of
the user's own classes (``custom``, written by ``python -m datasets.prepare_meshes``) share one item
format, ``(points float32 (num_points, 3), label int)``, and the attributes ``data``, ``labels``,
``class_names``, ``num_points``. :class:`ClassificationData` names one of them with its settings, so
the evaluation and training scripts (and their caches) handle all three the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .transforms import CLASSIFICATION_AUGMENTATIONS, item_rng

__all__ = ["CLASSIFICATION_DATASETS", "DEFAULT_VARIANT", "SCANOBJECTNN_VARIANTS", "AugmentedClassification",
           "ClassificationData", "VARIANT_HELP", "check_variant"]

CLASSIFICATION_DATASETS = ("modelnet40", "scanobjectnn", "custom")
SCANOBJECTNN_VARIANTS = ("obj_bg", "obj_only", "pb_t50_rs")
DEFAULT_VARIANT = "obj_bg"  # the paper's and the original code's ScanObjectNN split (main_split)
VARIANT_HELP = f"ScanObjectNN variant, only with --dataset scanobjectnn (default: {DEFAULT_VARIANT} = main_split, " \
               "as the paper and the original code; pb_t50_rs is the hardest, used by Point-MAE and followers)"


def check_variant(prog: str, dataset: str, variant: str | None) -> str | None:
    """The variant a command uses: ``variant`` (default obj_bg) for ScanObjectNN, None for a set without variants.

    Raises SystemExit naming the flags when ``--variant`` is given for a set that has none (it would be ignored).
    """
    if dataset == "scanobjectnn":
        return DEFAULT_VARIANT if variant is None else variant
    if variant is not None:
        raise SystemExit(f"{prog}: --variant {variant} is a ScanObjectNN variant, but --dataset {dataset} has no "
                         "variants; drop --variant or pass --dataset scanobjectnn.")
    return None


@dataclass(frozen=True)
class ClassificationData:
    """One classification set and how its clouds are read.

    Attributes:
        name: "modelnet40", "scanobjectnn" or "custom".
        root: the data root.
        variant: ScanObjectNN variant (ignored by the others; see :func:`check_variant`).
        num_points: the first ``num_points`` stored points of each cloud; None keeps every stored point.
    """

    name: str
    root: str | os.PathLike
    variant: str | None = DEFAULT_VARIANT
    num_points: int | None = 1024

    def __post_init__(self) -> None:
        if self.name not in CLASSIFICATION_DATASETS:
            raise ValueError(f"unknown dataset {self.name!r}; choose one of {CLASSIFICATION_DATASETS}")
        if self.name == "scanobjectnn" and self.variant not in SCANOBJECTNN_VARIANTS:
            raise ValueError(f"unknown ScanObjectNN variant {self.variant!r}; choose one of {SCANOBJECTNN_VARIANTS}")

    @property
    def used_variant(self) -> str | None:
        """The variant when it matters (ScanObjectNN), else None."""
        return self.variant if self.name == "scanobjectnn" else None

    @property
    def tag(self) -> str:
        """Display name: "modelnet40", "scanobjectnn (obj_bg)", "custom"."""
        return self.name if self.used_variant is None else f"{self.name} ({self.variant})"

    @property
    def file_tag(self) -> str:
        """File-name form of :attr:`tag`: "modelnet40", "scanobjectnn_obj_bg", "custom"."""
        return self.name if self.used_variant is None else f"{self.name}_{self.variant}"

    def load(self, split: str) -> Dataset:
        """The dataset object of ``split`` ("train" or "test")."""
        if self.name == "modelnet40":
            from datasets.modelnet40 import ModelNet40

            return ModelNet40(self.root, split=split, num_points=self.num_points)
        if self.name == "scanobjectnn":
            from datasets.scanobjectnn import ScanObjectNN

            return ScanObjectNN(self.root, split=split, variant=self.variant, num_points=self.num_points)
        from datasets.custom import CustomClassification

        return CustomClassification(self.root, split=split, num_points=self.num_points)

    def folder(self) -> Path:
        """The folder holding the set's files."""
        root = Path(self.root)
        if self.name == "modelnet40":
            from datasets.modelnet40 import MODELNET40_DIR

            return root / MODELNET40_DIR
        if self.name == "scanobjectnn":
            from datasets.scanobjectnn import find_variant_dir

            return find_variant_dir(root, self.variant)
        from datasets.custom import CUSTOM_DIR

        return root / CUSTOM_DIR

    def cache_fields(self) -> dict[str, Any]:
        """Everything about the data that determines features: name, variant, points, root, and
        (path, size, mtime_ns) of every file in the set's folder (cheap: no data is read)."""
        base = self.folder()
        files = sorted(p for p in base.iterdir() if p.is_file()) if base.is_dir() else []
        return {"dataset": self.name, "variant": self.used_variant, "num_points": self.num_points,
                "data_root": str(Path(self.root).resolve()),
                "data_files": [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]}


class AugmentedClassification(Dataset):
    """A classification set with a recipe's training augmentation, item by item.

    Item ``i``: ``(points float32 (N, 3), label)`` of ``base[i]`` through
    ``CLASSIFICATION_AUGMENTATIONS[augmentation]`` (datasets/transforms.py): ``dgcnn``, the DGCNN paper's per-axis
    scale U(2/3, 3/2) and shift U(-0.2, 0.2) (its ``translate_pointcloud``) with the points shuffled (its
    ``np.random.shuffle``); ``pointmae``, Point-MAE's shuffle then ``PointcloudScaleAndTranslate`` in float32.
    Randomness comes from a per-item numpy Generator seeded from torch's RNG, so a run is deterministic for a
    seed and resumes exactly.

    Raises:
        ValueError: unknown ``augmentation``.
    """

    def __init__(self, base: Dataset, augmentation: str = "dgcnn") -> None:
        if augmentation not in CLASSIFICATION_AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {augmentation!r}; choose from "
                             f"{sorted(CLASSIFICATION_AUGMENTATIONS)}")
        self.base = base
        self.augment = CLASSIFICATION_AUGMENTATIONS[augmentation]
        self.labels = base.labels
        self.class_names = getattr(base, "class_names", None)
        self.num_points = base.num_points

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        points, label = self.base[index]
        points, _ = self.augment(np.asarray(points, dtype=np.float32), item_rng())  # (N, 3)
        return torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)), label
