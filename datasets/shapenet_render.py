"""ShapeNetRender: (point cloud view 1, point cloud view 2, rendered image) pretraining triples.

Layout under the data root (see data/README.md)::

    ShapeNet/<class>/<object>.ply                              # 2048 points per cloud
    ShapeNetRendering/<class>/<object>/rendering/00.png ...    # 24 RGBA views, 137x137
    ShapeNetRendering/<class>/<object>/rendering/renderings.txt
    ShapeNetRendering/<class>/<object>/rendering/rendering_metadata.txt

The index is built once at construction by walking both trees with ``os.scandir``; items read
one PLY and one PNG from disk (nothing large is cached).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .io import (DatasetError, read_image_rgb, read_lines, read_ply_points, require_dir)
from .transforms import crosspoint_image_transform, crosspoint_point_transform, item_rng

__all__ = ["ShapeNetRender", "ShapeNetObject", "DatasetWarning"]

_EXAMPLES = 3


class DatasetWarning(UserWarning):
    """Some files of a dataset could not be paired and were left out (with counts)."""


class ShapeNetObject(NamedTuple):
    """One usable object: its class (synset) folder, object id and rendering file names."""

    category: str
    object_id: str
    views: tuple[str, ...]


def _visible_entries(path: str):
    with os.scandir(path) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


class ShapeNetRender(Dataset):
    """CrossPoint pretraining dataset.

    Args:
        root: data root holding ``ShapeNet/`` and ``ShapeNetRendering/``.
        img_transform: callable ``(PIL.Image RGB, rng) -> tensor (3, S, S)``;
            default ``crosspoint_image_transform(image_size)``.
        point_transform: callable ``(points (N, 3) float32, rng) -> (N, 3)``, applied twice
            independently to the same cloud; default ``crosspoint_point_transform()``.
        num_points: points per cloud; a PLY with more keeps its first ``num_points``, one with
            fewer raises DatasetError.
        image_size: output size S of the default image transform.

    Item ``i``: ``(pc1 float32 (num_points, 3), pc2 float32 (num_points, 3),
    img float32 (3, S, S))`` with one view chosen at random from the object's renderings.

    Attributes:
        objects: list of :class:`ShapeNetObject` (sorted by class then object id).
        classes: sorted class folder names that have at least one usable object.
        skipped: counts of what could not be paired: ``points_without_images`` (a PLY with no
            rendering folder or no views), ``images_without_points`` (a rendering folder with
            no PLY), ``listed_views_missing`` (names in renderings.txt with no PNG file).
    """

    def __init__(self, root: str | os.PathLike = "data",
                 img_transform: Callable | None = None,
                 point_transform: Callable | None = None,
                 num_points: int = 2048, image_size: int = 224) -> None:
        self.root = Path(root)
        self.num_points = int(num_points)
        self.img_transform = (img_transform if img_transform is not None
                              else crosspoint_image_transform(image_size))
        self.point_transform = (point_transform if point_transform is not None
                                else crosspoint_point_transform())
        self.points_dir = require_dir(self.root / "ShapeNet", "ShapeNetRender point clouds",
                                      self.root)
        self.images_dir = require_dir(self.root / "ShapeNetRendering", "ShapeNetRender images",
                                      self.root)
        self.objects, self.skipped, examples = self._index()
        self.classes = sorted({o.category for o in self.objects})
        if any(self.skipped.values()):
            details = "; ".join(f"{k}={v} (e.g. {', '.join(examples[k])})"
                                for k, v in self.skipped.items() if v)
            warnings.warn(f"ShapeNetRender under {self.root}: {len(self.objects)} usable objects; "
                          f"left out: {details}", DatasetWarning, stacklevel=2)
        if not self.objects:
            raise DatasetError(
                f"ShapeNetRender: no usable object under {self.root} (an object needs "
                f"ShapeNet/<class>/<object>.ply and ShapeNetRendering/<class>/<object>/rendering/"
                f"*.png); skipped: {self.skipped}")

    def _index(self) -> tuple[list[ShapeNetObject], dict[str, int], dict[str, list[str]]]:
        clouds: set[tuple[str, str]] = set()
        for cls in _visible_entries(self.points_dir):
            if not cls.is_dir():
                continue
            for f in _visible_entries(cls.path):
                if f.name.endswith(".ply") and f.is_file():
                    clouds.add((cls.name, f.name[:-4]))

        interned: dict[tuple[str, ...], tuple[str, ...]] = {}
        renders: dict[tuple[str, str], tuple[str, ...]] = {}
        listed_missing: list[str] = []
        for cls in _visible_entries(self.images_dir):
            if not cls.is_dir():
                continue
            for obj in _visible_entries(cls.path):
                if not obj.is_dir():
                    continue
                rdir = os.path.join(obj.path, "rendering")
                pngs: set[str] = set()
                listing = False
                if os.path.isdir(rdir):
                    for e in _visible_entries(rdir):
                        if e.name == "renderings.txt":
                            listing = True
                        elif e.name.lower().endswith(".png"):
                            pngs.add(e.name)
                if listing:
                    listed = read_lines(os.path.join(rdir, "renderings.txt"))
                    views = tuple(n for n in listed if n in pngs)
                    listed_missing += [os.path.join(rdir, n) for n in listed if n not in pngs]
                else:
                    views = tuple(sorted(pngs))
                renders[(cls.name, obj.name)] = interned.setdefault(views, views)

        objects = [ShapeNetObject(c, o, renders[(c, o)]) for (c, o) in sorted(clouds)
                   if renders.get((c, o))]
        no_images = sorted(k for k in clouds if not renders.get(k))
        no_points = sorted(k for k in renders if k not in clouds)
        skipped = {"points_without_images": len(no_images),
                   "images_without_points": len(no_points),
                   "listed_views_missing": len(listed_missing)}
        examples = {
            "points_without_images": [f"ShapeNet/{c}/{o}.ply" for c, o in no_images[:_EXAMPLES]],
            "images_without_points": [f"ShapeNetRendering/{c}/{o}"
                                      for c, o in no_points[:_EXAMPLES]],
            "listed_views_missing": listed_missing[:_EXAMPLES],
        }
        return objects, skipped, examples

    def __len__(self) -> int:
        return len(self.objects)

    def ply_path(self, index: int) -> Path:
        o = self.objects[index]
        return self.points_dir / o.category / f"{o.object_id}.ply"

    def image_paths(self, index: int) -> list[Path]:
        o = self.objects[index]
        rdir = self.images_dir / o.category / o.object_id / "rendering"
        return [rdir / v for v in o.views]

    def load_points(self, index: int) -> np.ndarray:
        """The raw cloud of object ``index``: float32 (num_points, 3), validated."""
        path = self.ply_path(index)
        points = read_ply_points(path)
        if points.shape[0] < self.num_points:
            raise DatasetError(f"{path}: has {points.shape[0]} points, fewer than num_points="
                               f"{self.num_points}")
        # Differs from the original: it uses every point of the file (2048 in the published set).
        points = points[: self.num_points]
        if not np.isfinite(points).all():
            bad = int(np.flatnonzero(~np.isfinite(points).all(axis=1))[0])
            raise DatasetError(f"{path}: NaN/inf coordinates (first bad point index {bad})")
        return points

    def load_image(self, index: int, rng: np.random.Generator) -> Image.Image:
        """One randomly chosen rendering of object ``index`` as an RGB PIL image."""
        paths = self.image_paths(index)
        return read_image_rgb(paths[int(rng.integers(len(paths)))])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = item_rng()
        points = self.load_points(index)
        # Differs from the original: the item is a flat (pc1, pc2, img), not ((pc1, pc2), img).
        pc1 = torch.as_tensor(self.point_transform(points, rng), dtype=torch.float32)
        pc2 = torch.as_tensor(self.point_transform(points, rng), dtype=torch.float32)
        img = self.img_transform(self.load_image(index, rng), rng)
        return pc1, pc2, img
