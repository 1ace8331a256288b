"""ShapeNetPart part segmentation (16 categories, 50 parts).

Layout: ``<root>/shapenet_part_seg_hdf5_data/ply_data_{train0..5,val0,test0..1}.h5`` with keys
``data`` float32 (N, 2048, 3), ``label`` (N, 1) category 0..15 and ``pid`` (N, 2048) global part
id 0..49, plus ``all_object_categories.txt`` and the file lists
``{train,val,test}_hdf5_file_list.txt`` (one h5 file name per line; used when present, else
``ply_data_<split>*.h5``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .io import (DatasetError, check_labels, check_points, read_h5, require_dir,
                 split_h5_files)
from .tables import (SHAPENET_PART_ALIASES, SHAPENET_PART_CATEGORIES, SHAPENET_PART_NUM_CATEGORIES,
                     SHAPENET_PART_NUM_PARTS, SHAPENET_PART_OFFSETS, SHAPENET_PART_PARTS_PER_CATEGORY)
from .transforms import item_rng, scale_translate_shuffle

__all__ = ["ShapeNetPart", "CATEGORIES", "PARTS_PER_CATEGORY", "PART_OFFSETS", "NUM_PARTS",
           "NUM_CATEGORIES", "SHAPENET_PART_DIR", "read_part_file"]

SHAPENET_PART_DIR = "shapenet_part_seg_hdf5_data"
# The part table of datasets/tables.py (its one definition), under the short names the loader's users read.
CATEGORIES = SHAPENET_PART_CATEGORIES
PARTS_PER_CATEGORY = SHAPENET_PART_PARTS_PER_CATEGORY
PART_OFFSETS = SHAPENET_PART_OFFSETS
NUM_PARTS = SHAPENET_PART_NUM_PARTS
NUM_CATEGORIES = SHAPENET_PART_NUM_CATEGORIES
_ALIASES = SHAPENET_PART_ALIASES  # "motor": the original code's name for category 10

# split -> the published splits it is made of
_SPLIT_PARTS = {"train": ("train",), "val": ("val",), "trainval": ("train", "val"),
                "test": ("test",)}


def _split_files(directory: Path, split: str) -> list[Path]:
    """The h5 files of ``split``, for each published split it is made of: the files named in
    ``<part>_hdf5_file_list.txt`` when that list exists (and is not empty), else
    ``ply_data_<part>*.h5``.

    Raises DatasetNotFoundError naming the list and the file when a listed file is missing, and
    naming the published split (e.g. 'val' of 'trainval') when it has no file at all.
    """
    files: list[Path] = []
    for part in _SPLIT_PARTS[split]:
        of = f" (part of '{split}')" if part != split else ""
        # Differs from the original: it globs '*train*.h5' (+ '*val*.h5') and never reads the
        # published lists; reading them notices a listed file that is missing.
        files += split_h5_files(directory, part, f"{part}_hdf5_file_list.txt",
                                f"ShapeNetPart split '{part}'{of}")
    return files


def _check_part_ids(pid: np.ndarray, category: np.ndarray, path: Path) -> np.ndarray:
    """Validate pid (M, P) against each shape's category range; return int64 (M, P)."""
    if not np.issubdtype(pid.dtype, np.integer):
        if not np.issubdtype(pid.dtype, np.floating) or not np.all(pid == np.round(pid)):
            raise DatasetError(f"{path}: 'pid' holds non-integer values (dtype {pid.dtype})")
    pid = pid.astype(np.int64)
    lo = np.asarray(PART_OFFSETS, dtype=np.int64)[category][:, None]  # (M, 1)
    hi = lo + np.asarray(PARTS_PER_CATEGORY, dtype=np.int64)[category][:, None]  # (M, 1)
    bad = ((pid < lo) | (pid >= hi)).any(axis=1)  # (M,)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        c = int(category[i])
        vals = np.unique(pid[i][(pid[i] < lo[i, 0]) | (pid[i] >= hi[i, 0])])[:5].tolist()
        raise DatasetError(
            f"{path}: shape index {i} (category {c} {CATEGORIES[c]}) has part ids {vals} outside "
            f"its range {lo[i, 0]}..{hi[i, 0] - 1} ({int(bad.sum())} bad shapes in this file)")
    return pid


def read_part_file(path: Path, num_points: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read and validate one ShapeNetPart h5 file.

    Returns:
        data float32 (M, num_points or P, 3), category int64 (M,), pid int64 (M, num_points or P)
        (the first ``num_points`` points; None keeps all).

    Raises:
        DatasetError naming the file: missing keys, transposed or mis-shaped arrays, bad values,
        part ids outside their shape's category range.
    """
    arrays = read_h5(path, ["data", "label", "pid"], point_slice={"data": num_points, "pid": num_points},
                     ndim={"data": 3, "pid": 2}, per_point={"pid": "data"})
    data = check_points(arrays["data"], path)
    label = check_labels(arrays["label"], data.shape[0], NUM_CATEGORIES, path)
    stored = arrays.shapes
    if stored["pid"] != stored["data"][:2]:
        raise DatasetError(f"{path}: 'pid' has shape {stored['pid']}, expected "
                           f"{stored['data'][:2]} to match 'data' {stored['data']}")
    return data, label, _check_part_ids(np.asarray(arrays["pid"]), label, path)


class ShapeNetPart(Dataset):
    """ShapeNetPart shapes with per-point part labels, all loaded into memory.

    Args:
        root: data root holding ``shapenet_part_seg_hdf5_data/``.
        split: "trainval" (train + val, the fine-tuning set), "train", "val" or "test".
        num_points: keep the first ``num_points`` points (paper: 2048); None keeps all.
        class_choice: keep one category (a name from ``CATEGORIES``; "motor" is accepted for
            "motorbike" as in the original), or None for all 16.
        augment: per item, scale each axis by U(2/3, 3/2), shift by U(-0.2, 0.2), and shuffle
            the point order (part ids follow their points).

    Item: ``(points float32 (num_points, 3), category int, part_ids int64 (num_points,))``;
    part ids are global (0..49).

    Attributes: data np.float32 (M, num_points, 3); labels np.int64 (M,) categories;
    part_ids np.int64 (M, num_points); seg_num_all / seg_start_index: number of parts and first
    global part id of the chosen category (50 and 0 without ``class_choice``), as in the original.
    """

    def __init__(self, root: str | os.PathLike = "data", split: str = "trainval",
                 num_points: int | None = 2048, class_choice: str | None = None,
                 augment: bool = False) -> None:
        if split not in _SPLIT_PARTS:
            raise ValueError(f"ShapeNetPart split must be one of {sorted(_SPLIT_PARTS)}, "
                             f"got {split!r}")
        self.root = Path(root)
        self.split = split
        self.augment = augment
        self.dir = require_dir(self.root / SHAPENET_PART_DIR, "ShapeNetPart", self.root)
        self.files = _split_files(self.dir, split)
        datas, labels, pids = [], [], []
        for f in self.files:
            data, label, pid = read_part_file(f, num_points)
            datas.append(data)
            labels.append(label)
            pids.append(pid)
        self.data = np.concatenate(datas, axis=0)
        self.labels = np.concatenate(labels, axis=0)
        self.part_ids = np.concatenate(pids, axis=0)

        self.class_choice = _ALIASES.get(class_choice, class_choice)
        if self.class_choice is not None:
            if self.class_choice not in CATEGORIES:
                raise ValueError(f"class_choice must be one of {CATEGORIES}, got {class_choice!r}")
            cat = CATEGORIES.index(self.class_choice)
            keep = self.labels == cat
            if not keep.any():
                raise DatasetError(f"ShapeNetPart split '{split}' in {self.dir} has no shape of "
                                   f"category {self.class_choice!r}")
            self.data, self.labels, self.part_ids = (self.data[keep], self.labels[keep],
                                                     self.part_ids[keep])
            self.seg_num_all = PARTS_PER_CATEGORY[cat]
            self.seg_start_index = PART_OFFSETS[cat]
        else:
            self.seg_num_all = NUM_PARTS
            self.seg_start_index = 0
        self.num_points = self.data.shape[1]

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        points = self.data[index]
        part_ids = self.part_ids[index]
        if self.augment:
            rng = item_rng()
            # Differs from the original: CrossPoint's (and DGCNN's) part-seg loader only
            # shuffles the points of 'trainval'; its translate_pointcloud is defined but unused.
            points, perm = scale_translate_shuffle(points, rng)
            part_ids = part_ids[perm]  # (num_points,), following the points
        return (torch.from_numpy(np.array(points, dtype=np.float32)), int(self.labels[index]),
                torch.from_numpy(np.array(part_ids, dtype=np.int64)))
