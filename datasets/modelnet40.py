"""ModelNet40 point clouds (the 2048-point HDF5 release) for linear-SVM and few-shot evaluation.

Layout: ``<root>/modelnet40_ply_hdf5_2048/ply_data_{train0..4,test0..1}.h5`` with keys ``data``
float32 (N, 2048, 3) and ``label`` (N, 1) (``normal`` and ``faceId`` are ignored), plus
``shape_names.txt``, ``train_files.txt`` and ``test_files.txt``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .io import LabelledClouds, load_h5_split, read_lines, require_dir, split_h5_files

__all__ = ["ModelNet40", "MODELNET40_DIR", "NUM_CLASSES"]

MODELNET40_DIR = "modelnet40_ply_hdf5_2048"
NUM_CLASSES = 40


class ModelNet40(LabelledClouds):
    """ModelNet40 classification clouds, all loaded into memory.

    Args:
        root: data root holding ``modelnet40_ply_hdf5_2048/``.
        split: "train" (9840 shapes) or "test" (2468).
        num_points: keep the first ``num_points`` points of each cloud (paper: 1024);
            None keeps all stored points.

    Item: ``(points float32 (num_points, 3), label int)``.

    Attributes:
        data: np.float32 (M, num_points, 3); labels: np.int64 (M,);
        class_names: 40 names from ``shape_names.txt`` (None if the file is absent).
    """

    def __init__(self, root: str | os.PathLike = "data", split: str = "train",
                 num_points: int | None = 1024) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"ModelNet40 split must be 'train' or 'test', got {split!r}")
        self.root = Path(root)
        self.split = split
        self.dir = require_dir(self.root / MODELNET40_DIR, "ModelNet40", self.root)
        names_file = self.dir / "shape_names.txt"
        self.class_names: list[str] | None = (read_lines(names_file) if names_file.is_file()
                                              else None)
        num_classes = len(self.class_names) if self.class_names else NUM_CLASSES
        # train_files.txt entries look like "data/modelnet40_ply_hdf5_2048/ply_data_train0.h5".
        self.files = split_h5_files(self.dir, split, f"{split}_files.txt", f"ModelNet40 split '{split}'")
        self.data, self.labels = load_h5_split(self.files, num_points, num_classes)
        self.num_points = self.data.shape[1]
