"""ScanObjectNN (real scanned objects, 15 classes) for linear-SVM and few-shot evaluation.

Accepted layouts (``<dir>`` is searched as ``<root>/ScanObjectNN/<dir>``,
``<root>/ScanObjectNN/h5_files/<dir>``, ``<root>/<dir>``, ``<root>/h5_files/<dir>``, or ``<root>``
itself when it is the split folder):

- OBJ_BG (``variant="obj_bg"``): ``main_split/train.h5`` + ``test.h5`` (CrossPoint's renamed
  copies) or the official ``main_split/training_objectdataset.h5`` + ``test_objectdataset.h5``.
- OBJ_ONLY (``"obj_only"``): the same file names in ``main_split_nobg/``.
- PB_T50_RS (``"pb_t50_rs"``): ``main_split/training_objectdataset_augmentedrot_scale75.h5`` +
  ``test_objectdataset_augmentedrot_scale75.h5``.

h5 keys: ``data`` float32 (N, 2048, 3), ``label`` (N,) (1-D), ``mask`` (N, 2048) ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

from .io import (CREATE_HINT, DatasetError, DatasetNotFoundError, LabelledClouds, load_h5_split,
                 root_is_file_message)
from .tables import SCANOBJECTNN_CLASSES as _TABLE_SCANOBJECTNN_CLASSES

__all__ = ["ScanObjectNN", "SCANOBJECTNN_CLASSES", "VARIANTS", "find_variant_dir", "find_variant_file"]

# Official ScanObjectNN class order (label i -> SCANOBJECTNN_CLASSES[i]), defined in datasets/tables.py;
# exported here as a list.
SCANOBJECTNN_CLASSES = list(_TABLE_SCANOBJECTNN_CLASSES)

# variant -> (split folder, {split: accepted file names, preferred first})
VARIANTS: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    "obj_bg": ("main_split", {"train": ("train.h5", "training_objectdataset.h5"),
                              "test": ("test.h5", "test_objectdataset.h5")}),
    "obj_only": ("main_split_nobg", {"train": ("train.h5", "training_objectdataset.h5"),
                                     "test": ("test.h5", "test_objectdataset.h5")}),
    "pb_t50_rs": ("main_split", {
        "train": ("training_objectdataset_augmentedrot_scale75.h5",),
        "test": ("test_objectdataset_augmentedrot_scale75.h5",)}),
}
_SPLIT_FOLDERS = {"main_split", "main_split_nobg"}


def find_variant_dir(root: str | os.PathLike, variant: str) -> Path:
    """The folder holding ``variant``'s h5 files (see the module docstring for where it looks).

    Raises DatasetNotFoundError listing the places searched when none holds any of its files, or
    saying so when ``root`` is a file.
    """
    if variant not in VARIANTS:
        raise ValueError(f"ScanObjectNN variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    root = Path(root)
    folder, names = VARIANTS[variant]
    problem = root_is_file_message(root, f"ScanObjectNN/ (or the split folder {folder}/ itself)")
    if problem:
        raise DatasetNotFoundError(f"ScanObjectNN {variant}: {problem}.")
    all_names = [n for split_names in names.values() for n in split_names]
    candidates = [root / "ScanObjectNN" / folder, root / "ScanObjectNN" / "h5_files" / folder,
                  root / folder, root / "h5_files" / folder]
    note = ""
    if root.name in _SPLIT_FOLDERS and root.name != folder:
        note = (f" ({root} is the {root.name} folder, but variant {variant!r} lives in "
                f"{folder}/)")
    else:
        candidates.append(root)
    for d in candidates:
        if d.is_dir() and any((d / n).is_file() for n in all_names):
            return d
    tried = ", ".join(str(d) for d in candidates)
    raise DatasetNotFoundError(
        f"ScanObjectNN {variant}: none of {all_names} found in any of: {tried}{note}. "
        + CREATE_HINT.format(root=root))


def find_variant_file(root: str | os.PathLike, variant: str, split: str) -> Path:
    """The h5 file of ``variant``'s ``split`` ("train" or "test"): the first of its accepted names
    (``VARIANTS``) present in :func:`find_variant_dir`'s folder.

    Raises DatasetNotFoundError (from :func:`find_variant_dir`), or DatasetError naming the folder
    when it holds the variant's other split only.
    """
    folder = find_variant_dir(root, variant)
    names = VARIANTS[variant][1][split]
    existing = [folder / n for n in names if (folder / n).is_file()]
    if not existing:
        raise DatasetError(f"ScanObjectNN {variant} split '{split}': no {' or '.join(names)} "
                           f"in {folder}")
    return existing[0]


class ScanObjectNN(LabelledClouds):
    """ScanObjectNN classification clouds, all loaded into memory.

    Args:
        root: data root (or the split folder itself).
        split: "train" or "test".
        variant: "obj_bg" (CrossPoint's main_split, 2309/581 shapes), "obj_only" or
            "pb_t50_rs".
        num_points: keep the first ``num_points`` points (paper: 1024); None keeps all.

    Item: ``(points float32 (num_points, 3), label int)``.

    Attributes: data np.float32 (M, num_points, 3); labels np.int64 (M,);
    class_names: the 15 official class names; file: the h5 file read.
    """

    def __init__(self, root: str | os.PathLike = "data", split: str = "train",
                 variant: str = "obj_bg", num_points: int | None = 1024) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"ScanObjectNN split must be 'train' or 'test', got {split!r}")
        self.root = Path(root)
        self.split = split
        self.variant = variant
        self.file = find_variant_file(self.root, variant, split)
        self.dir = self.file.parent
        self.class_names = list(SCANOBJECTNN_CLASSES)
        self.data, self.labels = load_h5_split([self.file], num_points, len(self.class_names))
        self.num_points = self.data.shape[1]
