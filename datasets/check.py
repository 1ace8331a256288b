"""Validate a data root and print what it holds.

    python -m datasets.check --root data [--only shapenet_render,modelnet40,scanobjectnn,shapenet_part]

Uses the loaders' own validation. Prints counts per split, classes with per-class counts, images
per object and points per cloud. Exit status 1 (with the error message) when a dataset is
invalid, when a dataset named in ``--only`` is missing, or when no dataset is found at all;
datasets that are absent are otherwise reported as "not found".
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .io import DatasetError, DatasetNotFoundError, read_image_rgb, read_ply_points
from .modelnet40 import MODELNET40_DIR, ModelNet40
from .scanobjectnn import VARIANTS, ScanObjectNN, find_variant_dir
from .shapenet_part import CATEGORIES, SHAPENET_PART_DIR, ShapeNetPart
from .shapenet_render import ShapeNetRender

DATASETS = ("shapenet_render", "modelnet40", "scanobjectnn", "shapenet_part")


class NotFound(Exception):
    """The dataset is absent from the root (as opposed to present but invalid)."""


def _stats(values: Sequence[int]) -> str:
    v = np.asarray(values)
    if v.size == 0:
        return "n/a"
    return f"min {int(v.min())} / median {float(np.median(v)):g} / max {int(v.max())}"


def _class_counts(labels: np.ndarray, names: Sequence[str] | None) -> str:
    counts = Counter(int(x) for x in labels)
    parts = [f"{names[k] if names and k < len(names) else k}: {counts[k]}"
             for k in sorted(counts)]
    return textwrap.fill(", ".join(parts), width=100, initial_indent="      ",
                         subsequent_indent="      ")


def _identity(x, rng):
    return x


def check_shapenet_render(root: Path, max_read: int = 50, num_points: int = 2048) -> list[str]:
    if not (root / "ShapeNet").exists() and not (root / "ShapeNetRendering").exists():
        raise NotFound
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ShapeNetRender(root, img_transform=_identity, point_transform=_identity,
                            num_points=num_points)
    lines = [f"  objects: {len(ds)} usable in {len(ds.classes)} classes"]
    counts = Counter(o.category for o in ds.objects)
    lines.append(textwrap.fill(", ".join(f"{c}: {counts[c]}" for c in ds.classes), width=100,
                               initial_indent="      ", subsequent_indent="      "))
    lines.append("  left out: " + ", ".join(f"{k} {v}" for k, v in ds.skipped.items()))
    lines += [f"  warning: {w.message}" for w in caught]
    lines.append(f"  images per object: {_stats([len(o.views) for o in ds.objects])}")
    idx = np.unique(np.linspace(0, len(ds) - 1, min(max_read, len(ds))).round().astype(int))
    npts, sizes = [], Counter()
    for i in idx:
        pts = read_ply_points(ds.ply_path(i))
        if pts.shape[0] < num_points:
            raise DatasetError(f"{ds.ply_path(i)}: has {pts.shape[0]} points, fewer than "
                               f"{num_points}")
        if not np.isfinite(pts).all():
            raise DatasetError(f"{ds.ply_path(i)}: NaN/inf coordinates")
        npts.append(pts.shape[0])
        for p in ds.image_paths(i)[:1]:
            sizes[read_image_rgb(p).size] += 1
    lines.append(f"  points per cloud ({len(idx)} clouds read): {_stats(npts)}")
    lines.append("  image sizes (first view of those objects): "
                 + ", ".join(f"{w}x{h} ({n})" for (w, h), n in sorted(sizes.items())))
    return lines


def _classification_lines(ds, split: str) -> list[str]:
    return [f"  {split}: {len(ds)} clouds x {ds.num_points} points, "
            f"{len(np.unique(ds.labels))} classes present ({ds.dir})",
            _class_counts(ds.labels, ds.class_names)]


def check_modelnet40(root: Path) -> list[str]:
    if not (root / MODELNET40_DIR).exists():
        raise NotFound
    lines = []
    for split in ("train", "test"):
        ds = ModelNet40(root, split, num_points=None)
        if split == "train":
            n = len(ds.class_names) if ds.class_names else None
            lines.append(f"  class names: {n if n is not None else 'no shape_names.txt'}")
        lines += _classification_lines(ds, split)
    return lines


def check_scanobjectnn(root: Path) -> list[str]:
    lines, found = [], False
    for variant in VARIANTS:
        try:
            find_variant_dir(root, variant)
        except DatasetNotFoundError:
            lines.append(f"  {variant}: not found")
            continue
        found = True
        for split in ("train", "test"):
            ds = ScanObjectNN(root, split, variant=variant, num_points=None)
            lines.append(f"  {variant} {split}: {len(ds)} clouds x {ds.num_points} points, "
                         f"{len(np.unique(ds.labels))} classes present ({ds.file})")
            lines.append(_class_counts(ds.labels, ds.class_names))
    if not found:
        raise NotFound
    return lines


def check_shapenet_part(root: Path) -> list[str]:
    if not (root / SHAPENET_PART_DIR).exists():
        raise NotFound
    lines = []
    for split in ("train", "val", "test"):
        ds = ShapeNetPart(root, split, num_points=None)
        lines.append(f"  {split}: {len(ds)} shapes x {ds.num_points} points, "
                     f"{len(np.unique(ds.labels))} categories, "
                     f"{len(np.unique(ds.part_ids))} part ids present")
        lines.append(_class_counts(ds.labels, CATEGORIES))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data", help="data root (default: data)")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated subset of {','.join(DATASETS)} (default: all; "
                             "a dataset named here must be present)")
    parser.add_argument("--max-read", type=int, default=50,
                        help="ShapeNetRender objects whose cloud and first image are read "
                             "(default: 50)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    requested = DATASETS if args.only is None else tuple(
        s.strip() for s in args.only.split(",") if s.strip())
    unknown = [s for s in requested if s not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {','.join(DATASETS)}")

    checks: dict[str, Callable[[], list[str]]] = {
        "shapenet_render": lambda: check_shapenet_render(root, args.max_read),
        "modelnet40": lambda: check_modelnet40(root),
        "scanobjectnn": lambda: check_scanobjectnn(root),
        "shapenet_part": lambda: check_shapenet_part(root),
    }
    print(f"data root: {root.resolve()}")
    failed, missing, found = [], [], []
    for name in requested:
        try:
            lines = checks[name]()
        except NotFound:
            print(f"{name}: not found")
            missing.append(name)
            continue
        except (DatasetError, OSError) as e:
            print(f"{name}: INVALID: {e}")
            print(f"{name}: INVALID: {e}", file=sys.stderr)
            failed.append(name)
            continue
        found.append(name)
        print(f"{name}: ok")
        print("\n".join(lines))
    if failed:
        print(f"FAILED: invalid dataset(s): {', '.join(failed)}", file=sys.stderr)
        return 1
    if args.only is not None and missing:
        print(f"FAILED: requested dataset(s) not found under {root}: {', '.join(missing)}",
              file=sys.stderr)
        return 1
    if not found:
        print(f"FAILED: no dataset found under {root}. Run `bash data/download_data.sh --root "
              f"{root}` or `python -m datasets.synthetic --root {root} --preset tiny`.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
