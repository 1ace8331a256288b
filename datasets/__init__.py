"""Datasets of CrossPoint: loaders for the published files, augmentations, tables and validation.

Every loader takes the data root (default "data") and finds its own sub-folder; see
data/README.md for the expected tree. ``python -m datasets.check --root data`` validates a root.

Top level, what training and evaluation read: the loaders (``modelnet40``, ``scanobjectnn``,
``shapenet_render``, ``shapenet_part``, ``custom``; ``classification`` names the classification sets;
``io`` holds the file readers), ``transforms``, ``tables`` (class lists, part table),
``provenance`` (``data_kind``: synthetic or real data) and ``check``.
Subpackages, what writes a data root (not imported here): ``synthetic`` (the procedural generator,
``python -m datasets.synthetic``), ``prepare_meshes`` (your meshes, ``python -m datasets.prepare_meshes``)
and ``making`` (what both share: geometry, rendering, mesh reading, worker pool, contact sheets).
"""

from .io import (DatasetError, DatasetNotFoundError, load_image_rgb, read_image_rgb,
                 read_ply_points)
from .modelnet40 import ModelNet40
from .scanobjectnn import SCANOBJECTNN_CLASSES, ScanObjectNN
from .shapenet_part import (CATEGORIES, NUM_PARTS, PART_OFFSETS, PARTS_PER_CATEGORY,
                            ShapeNetPart)
from .shapenet_render import (DatasetWarning, ShapeNetObject, ShapeNetRender,
                              TruncatedImageWarning)
from .transforms import (Compose, crosspoint_image_transform, crosspoint_point_transform,
                         eval_image_transform, item_rng)

__all__ = [
    "DatasetError", "DatasetNotFoundError", "DatasetWarning", "TruncatedImageWarning",
    "load_image_rgb", "read_image_rgb", "read_ply_points",
    "ModelNet40", "ScanObjectNN", "SCANOBJECTNN_CLASSES", "ShapeNetPart", "CATEGORIES",
    "NUM_PARTS", "PART_OFFSETS", "PARTS_PER_CATEGORY", "ShapeNetRender", "ShapeNetObject",
    "Compose", "crosspoint_image_transform", "crosspoint_point_transform",
    "eval_image_transform", "item_rng",
]
