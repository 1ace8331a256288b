"""ShapeNetRender: (point cloud view 1, point cloud view 2, rendered image) pretraining triples.

Layout under the data root (see data/README.md)::

    ShapeNet/<class>/<object>.ply                              # 2048 points per cloud
    ShapeNetRendering/<class>/<object>/rendering/00.png ...    # 24 RGBA views, 137x137
    ShapeNetRendering/<class>/<object>/rendering/renderings.txt
    ShapeNetRendering/<class>/<object>/rendering/rendering_metadata.txt

The index is built once at construction by walking both trees with ``os.scandir``; items read
one PLY and one PNG from disk (nothing large is cached).

A rendering that PIL can decode only in part (a truncated PNG) loads as in the original code,
with one :class:`TruncatedImageWarning` per file; ``image_stats()`` counts such loads across
DataLoader worker processes.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import warnings
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .io import DatasetError, load_image_rgb, read_lines, read_ply_points, require_dir
from .transforms import crosspoint_image_transform, crosspoint_point_transform, item_rng

__all__ = ["ShapeNetRender", "ShapeNetObject", "DatasetWarning", "TruncatedImageWarning"]

_EXAMPLES = 3
_HOLDS = "ShapeNet/ and ShapeNetRendering/"
# Shared objects come from a "spawn" context: a lock made in the default "fork" context cannot
# be sent to DataLoader workers started with "spawn" or "forkserver".
_MP = multiprocessing.get_context("spawn")


class DatasetWarning(UserWarning):
    """Some files of a dataset could not be paired and were left out (with counts)."""


class TruncatedImageWarning(UserWarning):
    """A rendering could be decoded only in part (truncated file) and was loaded as such."""


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

    A view PNG that PIL can decode only in part (truncated) is loaded as the original code loads
    it (``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``); the first such load of each file warns with a
    :class:`TruncatedImageWarning` naming it, once per dataset object, also across DataLoader
    worker processes and epochs. A view that cannot be decoded at all raises DatasetError.

    Attributes:
        objects: list of :class:`ShapeNetObject` (sorted by class then object id).
        classes: sorted class folder names that have at least one usable object.
        skipped: counts of what could not be paired: ``points_without_images`` (a PLY with no
            rendering folder or no views), ``images_without_points`` (a rendering folder with
            no PLY), ``listed_views_missing`` (names in renderings.txt with no PNG file),
            ``empty_class_folders`` (a class folder under ShapeNet/ with no PLY, or under
            ShapeNetRendering/ with no object folder).
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
                                      self.root, holds=_HOLDS)
        self.images_dir = require_dir(self.root / "ShapeNetRendering", "ShapeNetRender images",
                                      self.root, holds=_HOLDS)
        self.objects, self.skipped, examples = self._index()
        self.classes = sorted({o.category for o in self.objects})
        if any(self.skipped.values()):
            details = "; ".join(
                f"{k}={v} ({'' if k == 'empty_class_folders' else 'e.g. '}"
                f"{', '.join(examples[k])})" for k, v in self.skipped.items() if v)
            warnings.warn(f"ShapeNetRender under {self.root}: {len(self.objects)} usable objects; "
                          f"left out: {details}", DatasetWarning, stacklevel=2)
        if not self.objects:
            raise DatasetError(
                f"ShapeNetRender: no usable object under {self.root} (an object needs "
                f"ShapeNet/<class>/<object>.ply and ShapeNetRendering/<class>/<object>/rendering/"
                f"*.png); skipped: {self.skipped}")
        # First view index of each object in one flat numbering of all views: (len(objects) + 1,).
        self._view_start = np.concatenate(
            [[0], np.cumsum([len(o.views) for o in self.objects], dtype=np.int64)])
        # Shared memory (survives fork and spawn pickling into DataLoader workers, which are
        # re-created every epoch): one "already reported truncated" flag per view file, and the
        # counters behind image_stats().
        self._truncated_flags = _MP.RawArray(ctypes.c_uint8, max(int(self._view_start[-1]), 1))
        self._truncated_loads = _MP.RawValue(ctypes.c_int64, 0)
        self._truncated_files = _MP.RawValue(ctypes.c_int64, 0)
        self._stats_lock = _MP.Lock()

    def _index(self) -> tuple[list[ShapeNetObject], dict[str, int], dict[str, list[str]]]:
        clouds: set[tuple[str, str]] = set()
        empty_classes: list[str] = []
        for cls in _visible_entries(self.points_dir):
            if not cls.is_dir():
                continue
            n_before = len(clouds)
            for f in _visible_entries(cls.path):
                if f.name.endswith(".ply") and f.is_file():
                    clouds.add((cls.name, f.name[:-4]))
            if len(clouds) == n_before:
                empty_classes.append(f"ShapeNet/{cls.name}")

        interned: dict[tuple[str, ...], tuple[str, ...]] = {}
        renders: dict[tuple[str, str], tuple[str, ...]] = {}
        listed_missing: list[str] = []
        for cls in _visible_entries(self.images_dir):
            if not cls.is_dir():
                continue
            objects_here = [obj for obj in _visible_entries(cls.path) if obj.is_dir()]
            if not objects_here:
                empty_classes.append(f"ShapeNetRendering/{cls.name}")
            for obj in objects_here:
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
                   "listed_views_missing": len(listed_missing),
                   "empty_class_folders": len(empty_classes)}
        examples = {
            "points_without_images": [f"ShapeNet/{c}/{o}.ply" for c, o in no_images[:_EXAMPLES]],
            "images_without_points": [f"ShapeNetRendering/{c}/{o}"
                                      for c, o in no_points[:_EXAMPLES]],
            "listed_views_missing": listed_missing[:_EXAMPLES],
            "empty_class_folders": empty_classes,  # all of them (a handful of classes at most)
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
        """One randomly chosen rendering of object ``index`` as an RGB PIL image (W, H)."""
        paths = self.image_paths(index)
        view = int(rng.integers(len(paths)))
        img, truncated = load_image_rgb(paths[view])
        if truncated:
            self._record_truncated(int(self._view_start[index]) + view, paths[view])
        return img

    def _record_truncated(self, flat_view: int, path: Path) -> None:
        """Count a truncated load; warn the first time this dataset object meets the file."""
        with self._stats_lock:
            self._truncated_loads.value += 1
            first = not self._truncated_flags[flat_view]
            if first:
                self._truncated_flags[flat_view] = 1
                self._truncated_files.value += 1
        if first:
            warnings.warn(f"{path}: truncated image, loaded in part (as the original code does "
                          "with PIL.ImageFile.LOAD_TRUNCATED_IMAGES); reported once per file",
                          TruncatedImageWarning, stacklevel=3)

    def image_stats(self) -> dict[str, int]:
        """Truncated renderings met by this dataset object, in every process that uses it.

        Returns:
            {"truncated_loads": loads of a truncated file since construction or the last
            :meth:`reset_image_stats`, "truncated_files": distinct truncated files met since
            construction (each was warned about once)}.
        """
        with self._stats_lock:
            return {"truncated_loads": int(self._truncated_loads.value),
                    "truncated_files": int(self._truncated_files.value)}

    def reset_image_stats(self) -> None:
        """Set ``truncated_loads`` back to 0 (e.g. at the start of an epoch); files already
        warned about are not warned about again, and ``truncated_files`` keeps counting them."""
        with self._stats_lock:
            self._truncated_loads.value = 0

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = item_rng()
        points = self.load_points(index)
        # Differs from the original: the item is a flat (pc1, pc2, img), not ((pc1, pc2), img).
        pc1 = torch.as_tensor(self.point_transform(points, rng), dtype=torch.float32)
        pc2 = torch.as_tensor(self.point_transform(points, rng), dtype=torch.float32)
        img = self.img_transform(self.load_image(index, rng), rng)
        return pc1, pc2, img
