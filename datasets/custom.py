"""The classification set of your own objects, written by ``python -m datasets.prepare_meshes``.

Layout under the data root (the ModelNet40 HDF5 layout)::

    custom_cls/ply_data_train0.h5 ...       # data float32 (N, P, 3) on the unit sphere, label int64 (N, 1)
    custom_cls/ply_data_test0.h5 ...
    custom_cls/shape_names.txt              # class names (the input's folder names, sorted); label i -> line i
    custom_cls/train_files.txt, test_files.txt
    custom_cls/objects.json (and .csv)      # per row: h5_file, row, class, label, split, object, source
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .io import DatasetError, DatasetNotFoundError, LabelledClouds, load_h5_split, read_lines, split_h5_files

__all__ = ["CustomClassification", "CUSTOM_DIR"]

CUSTOM_DIR = "custom_cls"
_HOW = "create it from your meshes with `python -m datasets.prepare_meshes --input DIR --output {root}`"


class CustomClassification(LabelledClouds):
    """Your objects' labelled point clouds, all loaded into memory (same interface as
    :class:`datasets.modelnet40.ModelNet40`).

    Args:
        root: data root holding ``custom_cls/`` (the ``--output`` of ``datasets.prepare_meshes``).
        split: "train" or "test".
        num_points: keep the first ``num_points`` points of each cloud (the stored points are
            independent uniform surface samples, so this is a uniform subsample); None keeps all.

    Item: ``(points float32 (num_points, 3), label int)``.

    Attributes:
        data: np.float32 (M, num_points, 3); labels: np.int64 (M,); class_names: names from
        ``shape_names.txt``; num_points; dir; files (the split's .h5 files); objects: one dict per
        row in item order (``h5_file, row, class, label, split, object, source``; source is the
        mesh file relative to the ``--input`` folder).

    Raises:
        DatasetNotFoundError when ``custom_cls/`` or its ``shape_names.txt`` / ``<split>_files.txt``
        is missing (saying how to create it); DatasetError for malformed content.
    """

    def __init__(self, root: str | os.PathLike = "data", split: str = "train",
                 num_points: int | None = 1024) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"CustomClassification split must be 'train' or 'test', got {split!r}")
        self.root = Path(root)
        self.split = split
        self.dir = self.root / CUSTOM_DIR
        if not self.dir.is_dir():
            raise DatasetNotFoundError(f"custom classification set: directory {self.dir} does not "
                                       f"exist; {_HOW.format(root=self.root)}")
        for needed in ("shape_names.txt", f"{split}_files.txt"):
            if not (self.dir / needed).is_file():
                raise DatasetNotFoundError(f"custom classification set: {self.dir / needed} is "
                                           f"missing (an unfinished run?); "
                                           f"{_HOW.format(root=self.root)}")
        self.class_names: list[str] = read_lines(self.dir / "shape_names.txt")
        if not self.class_names:
            raise DatasetError(f"{self.dir / 'shape_names.txt'}: no class names")
        self.files = split_h5_files(self.dir, split, f"{split}_files.txt",
                                    f"custom classification set split '{split}'")
        self.data, self.labels = load_h5_split(self.files, num_points, len(self.class_names))
        self.num_points = self.data.shape[1]
        self.objects = self._objects()

    def _objects(self) -> list[dict]:
        """The rows of objects.json for this split, in item order (empty if the file is absent)."""
        path = self.dir / "objects.json"
        if not path.is_file():
            return []
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(f"{path}: not valid JSON ({e})") from e
        order = {f.name: i for i, f in enumerate(self.files)}
        mine = sorted((r for r in rows if r.get("h5_file") in order),
                      key=lambda r: (order[r["h5_file"]], r["row"]))
        if len(mine) != len(self.labels) or any(
                r["label"] != int(lab) for r, lab in zip(mine, self.labels)):
            raise DatasetError(f"{path}: lists {len(mine)} rows for the {self.split} files, which "
                               f"hold {len(self.labels)} clouds (or the labels differ); rerun "
                               "python -m datasets.prepare_meshes")
        return mine
