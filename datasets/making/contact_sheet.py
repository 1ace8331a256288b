"""A contact sheet of a data root: one PNG showing what it holds.

Usage::

    python -m datasets.making.contact_sheet --root ROOT --out sheet.png [--cell 96]

Works on any data root: the synthetic generator's (``datasets.synthetic`` writes its
``contact_sheet.png`` with :func:`make_contact_sheet`), one written by ``datasets.prepare_meshes``,
or the published layout (data/README.md). One row (or two) per data set present, in this order:

- ShapeNetRender (``ShapeNet/`` + ``ShapeNetRendering/``): for each class folder, the first object
  (sorted, as :class:`datasets.shapenet_render.ShapeNetRender` pairs them) with its first view
  composited on white, and its point cloud. Classes are named after the family of a known ShapeNet
  synset (``datasets.tables.SHAPENET_RENDER_CLASSES``, the names the synthetic generator uses), else after
  the folder (``prepare_meshes``' classes).
- ModelNet40 and ``custom_cls`` (``prepare_meshes``' classification set): the first cloud of each
  class in the first train file, coloured by height, named from ``shape_names.txt``.
- ScanObjectNN (OBJ_BG train file): one cloud per class, object red, background grey.
- ShapeNetPart (first train file): one cloud per category, coloured by part id.

Clouds are drawn orthographically (y up, seen from azimuth 35 degrees, elevation 20 degrees).
Every problem with a file raises :class:`datasets.io.DatasetError` naming it; a root holding none of
these data sets raises :class:`datasets.io.DatasetNotFoundError`.
"""

from __future__ import annotations

import argparse
import colorsys
import math
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from datasets import tables
from datasets.custom import CUSTOM_DIR
from datasets.io import (DatasetError, DatasetNotFoundError, check_labels, check_points, read_h5,
                         read_lines, read_ply_points, split_h5_files)
from datasets.modelnet40 import MODELNET40_DIR, NUM_CLASSES as MODELNET40_CLASSES
from datasets.scanobjectnn import SCANOBJECTNN_CLASSES, find_variant_file
from datasets.shapenet_part import SHAPENET_PART_DIR
from datasets.making.common import rot
from datasets.shapenet_render import ShapeNetRender

__all__ = ["make_contact_sheet", "main"]

CELL = 96
SYNSET_NAMES = {synset: family for family, synset in tables.SHAPENET_RENDER_CLASSES}
Cells = list[tuple[str, Image.Image]]  # (label, cell image) per class


def _scatter(points: np.ndarray, colors: np.ndarray, size: int = CELL) -> Image.Image:
    """Orthographic view of a cloud (y up, seen from azimuth 35 deg, elevation 20 deg), painter's order.

    points: (N, 3); colors: (N, 3) floats in [0, 1]. Returns a size x size RGB image.
    """
    p = points - (points.max(0) + points.min(0)) / 2
    p = p @ rot("y", math.radians(-35)).T @ rot("x", math.radians(20)).T
    scale = 0.45 * size / max(float(np.abs(p[:, :2]).max()), 1e-9)
    col = np.clip((p[:, 0] * scale + size / 2).astype(int), 0, size - 2)
    row = np.clip((size / 2 - p[:, 1] * scale).astype(int), 0, size - 2)
    depth = (p[:, 2] - p[:, 2].min()) / max(float(np.ptp(p[:, 2])), 1e-9)
    order = np.argsort(-depth, kind="stable")  # far (large z) first
    shade = (0.55 + 0.45 * (1 - depth))[:, None]
    rgb = (np.clip(colors * shade, 0, 1) * 255).astype(np.uint8)
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    for dr in (0, 1):
        for dc in (0, 1):
            img[row[order] + dr, col[order] + dc] = rgb[order]
    return Image.fromarray(img, "RGB")


def _part_colors(labels: np.ndarray) -> np.ndarray:
    """(N,) part ids -> (N, 3) colours in [0, 1]."""
    base = np.array([colorsys.hsv_to_rgb((k * 0.618) % 1.0, 0.75, 0.9) for k in range(64)])
    return base[np.asarray(labels) % 64]


def _by_height(points: np.ndarray, _: dict) -> np.ndarray:
    """(N, 3) -> (N, 3) colours from red (low) to blue (high)."""
    h = (points[:, 1] - points[:, 1].min()) / max(float(np.ptp(points[:, 1])), 1e-9)
    return np.stack([0.9 - 0.6 * h, 0.3 + 0.4 * h, 0.3 + 0.6 * h], 1)


def _by_mask(points: np.ndarray, extra: dict) -> np.ndarray:
    """ScanObjectNN: object points (mask != -1) red, background grey; (N, 3) colours."""
    return np.where((extra["mask"] == -1)[:, None], [[0.7, 0.7, 0.7]], [[0.85, 0.3, 0.2]])


def _render_on_white(png: Path, cell: int) -> Image.Image:
    """A view PNG composited on white and resized to cell x cell (RGB)."""
    try:
        with Image.open(png) as im:
            view = im.convert("RGBA")
    except (OSError, UnidentifiedImageError) as e:
        raise DatasetError(f"{png}: cannot read the image ({e})") from e
    bg = Image.new("RGBA", view.size, (255, 255, 255, 255))
    bg.alpha_composite(view)
    return bg.convert("RGB").resize((cell, cell), Image.BILINEAR)


def _shapenet_render_rows(root: Path, cell: int) -> list[tuple[str, Cells]]:
    """The render row and the cloud row: the first object of every class folder."""
    ds = ShapeNetRender(root)
    first: dict[str, int] = {}
    for i, o in enumerate(ds.objects):
        first.setdefault(o.category, i)
    renders, clouds = [], []
    for folder, i in first.items():
        name = SYNSET_NAMES.get(folder, folder)
        renders.append((name, _render_on_white(ds.image_paths(i)[0], cell)))
        pts = read_ply_points(ds.ply_path(i))
        clouds.append((name, _scatter(pts, np.tile([[0.25, 0.45, 0.8]], (len(pts), 1)), cell)))
    return [(f"ShapeNetRender: {ds.objects[0].views[0]}", renders), ("ShapeNetRender: .ply", clouds)]


def _per_class(path: Path, names: Sequence[str], colour: Callable[[np.ndarray, dict], np.ndarray],
               cell: int, extra_keys: Sequence[str] = ()) -> Cells:
    """The first cloud of each label present in the h5 file ``path`` (``data`` (N, P, 3), ``label``
    (N,) or (N, 1), and ``extra_keys`` (N, P) for ``colour(points (P, 3), {key: (P,)}) -> (P, 3)``)."""
    arrays = read_h5(path, ["data", "label", *extra_keys], ndim={"data": 3})
    data = check_points(arrays["data"], path)
    label = check_labels(arrays["label"], len(data), len(names), path)
    cells = []
    for c in sorted(set(label.tolist())):
        i = int(np.flatnonzero(label == c)[0])
        cells.append((names[c], _scatter(data[i], colour(data[i], {k: arrays[k][i] for k in extra_keys}), cell)))
    return cells


def _h5_title(name: str, path: Path) -> str:
    return f"{name} ({path.stem.removeprefix('ply_data_')})"


def _class_names(directory: Path, default: Sequence[str] | None) -> list[str]:
    """``shape_names.txt``'s lines when present, else ``default`` (None: the file is required)."""
    names_file = directory / "shape_names.txt"
    if names_file.is_file():
        return read_lines(names_file)
    if default is None:
        raise DatasetNotFoundError(f"{names_file} does not exist (the class names, label i -> line i)")
    return list(default)


def _rows(root: Path, cell: int) -> list[tuple[str, Cells]]:
    """Every row for the data sets present under ``root``: (title, cells)."""
    rows: list[tuple[str, Cells]] = []
    if (root / "ShapeNet").is_dir() or (root / "ShapeNetRendering").is_dir():
        rows += _shapenet_render_rows(root, cell)
    # ModelNet40 without shape_names.txt: labels as names; custom_cls always has the file.
    for folder, title, default in ((MODELNET40_DIR, "ModelNet40", [str(i) for i in range(MODELNET40_CLASSES)]),
                                   (CUSTOM_DIR, CUSTOM_DIR, None)):
        directory = root / folder
        if directory.is_dir():
            path = split_h5_files(directory, "train", "train_files.txt", f"{title} split 'train'")[0]
            names = _class_names(directory, default)
            rows.append((_h5_title(title, path), _per_class(path, names, _by_height, cell)))
    try:
        path = find_variant_file(root, "obj_bg", "train")
    except DatasetNotFoundError:
        path = None  # no ScanObjectNN here
    if path is not None:
        rows.append(("ScanObjectNN main_split (red: object, grey: background)",
                     _per_class(path, SCANOBJECTNN_CLASSES, _by_mask, cell, ("mask",))))
    directory = root / SHAPENET_PART_DIR
    if directory.is_dir():
        path = split_h5_files(directory, "train", "train_hdf5_file_list.txt", "ShapeNetPart split 'train'")[0]
        names = [c.capitalize() for c in tables.SHAPENET_PART_CATEGORIES]
        rows.append(("ShapeNetPart (colour: part id)",
                     _per_class(path, names, lambda p, e: _part_colors(e["pid"]), cell, ("pid",))))
    return rows


def make_contact_sheet(root: str | os.PathLike, out_path: str | os.PathLike, cell: int = CELL) -> None:
    """Writes the contact sheet of the data root ``root`` (see the module docstring) to ``out_path``
    (PNG, no metadata: the same root gives the same bytes); each cell is cell x cell pixels.

    Raises:
        DatasetNotFoundError when ``root`` holds none of the data sets; DatasetError naming the file
        for unreadable or malformed content.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"{root}: not a folder (pass a data root)")
    rows = _rows(root, cell)
    if not rows:
        raise DatasetNotFoundError(
            f"{root}: holds none of ShapeNet/ + ShapeNetRendering/, {MODELNET40_DIR}/, {CUSTOM_DIR}/, "
            f"ScanObjectNN (main_split/), {SHAPENET_PART_DIR}/; nothing to draw")
    ncol = max([len(c) for _, c in rows] + [1])
    title_h, label_h = 14, 12
    height = sum(title_h + cell + label_h for _ in rows) + 4
    sheet = Image.new("RGB", (ncol * (cell + 4) + 4, max(height, 20)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = 2
    for title, cells in rows:
        draw.text((4, y), title, fill=(0, 0, 0))
        y += title_h
        for k, (name, im) in enumerate(cells):
            x = 4 + k * (cell + 4)
            sheet.paste(im, (x, y))
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], outline=(210, 210, 210))
            draw.text((x + 2, y + cell), name[:16], fill=(40, 40, 40))
        y += cell + label_h
    sheet.save(out_path, format="PNG")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m datasets.making.contact_sheet",
                                description="Draw a contact sheet of a data root (synthetic, prepared by "
                                            "datasets.prepare_meshes, or the published layout).")
    p.add_argument("--root", required=True, help="data root")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--cell", type=int, default=CELL, help=f"cell size in pixels (default {CELL})")
    args = p.parse_args(argv)
    if args.cell < 16:
        p.error(f"--cell must be at least 16, got {args.cell}")
    try:
        make_contact_sheet(args.root, args.out, args.cell)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"contact sheet: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
