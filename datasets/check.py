"""Validate a data root and print what it holds.

    python -m datasets.check --root data [--only shapenet_render,modelnet40,scanobjectnn,shapenet_part]
                             [--full [--workers W]] [--num_points 2048]

Uses the loaders' own validation. Prints counts per split, classes with per-class counts, images
per object and points per cloud. By default ShapeNetRender is sampled (the cloud and first view
of up to ``--max-read`` objects); ``--full`` decodes every file of every dataset under the root
(every view PNG of every object, every PLY, every h5 file and all its arrays) over a process
pool with a progress bar, and lists every bad file with its reason. A PNG that PIL can decode
only in part (truncated) is listed too, but is not an error: training loads it in part, as the
original code does. Exit status 1 (with the error messages) when a dataset is invalid, when
``--full`` finds a bad file, when a dataset named in ``--only`` is missing, when the root is a
file, or when no dataset is found at all; datasets that are absent are otherwise reported as
"not found".
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import h5py
import numpy as np

from .io import (DatasetError, DatasetNotFoundError, load_h5_split, load_image_rgb, read_lines,
                 read_ply_points, root_is_file_message)
from .custom import CUSTOM_DIR, CustomClassification
from .modelnet40 import MODELNET40_DIR, NUM_CLASSES as MODELNET40_NUM_CLASSES, ModelNet40
from .making.parallel import Runner
from .scanobjectnn import SCANOBJECTNN_CLASSES, VARIANTS, ScanObjectNN, find_variant_dir
from .shapenet_part import CATEGORIES, SHAPENET_PART_DIR, ShapeNetPart, read_part_file
from .shapenet_render import ShapeNetRender

DATASETS = ("shapenet_render", "modelnet40", "scanobjectnn", "shapenet_part", "custom")


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


def check_shapenet_render(root: Path, max_read: int = 50, num_points: int = 2048) -> tuple[str, list[str]]:
    """Index ShapeNetRender and read the cloud and first view of up to ``max_read`` objects
    (none when ``max_read`` is 0, e.g. under ``--full``, which decodes every file instead).

    Returns:
        (what was decoded, for the "ok" line: a sampled check names the share of the files it read
        and points to ``--full``; the report lines).
    """
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
    if max_read <= 0:
        return "index only, no file decoded here; --full decodes every file", lines
    idx = np.unique(np.linspace(0, len(ds) - 1, min(max_read, len(ds))).round().astype(int))
    npts, sizes, truncated = [], Counter(), []
    for i in idx:
        pts = read_ply_points(ds.ply_path(i))
        if pts.shape[0] < num_points:
            raise DatasetError(f"{ds.ply_path(i)}: has {pts.shape[0]} points, fewer than "
                               f"{num_points}")
        if not np.isfinite(pts).all():
            raise DatasetError(f"{ds.ply_path(i)}: NaN/inf coordinates")
        npts.append(pts.shape[0])
        for p in ds.image_paths(i)[:1]:
            img, cut = load_image_rgb(p)
            sizes[img.size] += 1
            if cut:
                truncated.append(str(p))
    lines.append(f"  points per cloud ({len(idx)} clouds read): {_stats(npts)}")
    lines.append("  image sizes (first view of those objects): "
                 + ", ".join(f"{w}x{h} ({n})" for (w, h), n in sorted(sizes.items())))
    lines += [f"  truncated (loads in part, as in the original): {p}" for p in truncated]
    n_views = sum(len(o.views) for o in ds.objects)
    note = (f"sampled: decoded {len(idx)} of {len(ds)} clouds and {sum(sizes.values())} of {n_views} views "
            f"(the first view of each object read); --full decodes every file")
    return note, lines


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


def check_custom(root: Path) -> list[str]:
    """The classification set written by ``python -m datasets.prepare_meshes`` (``custom_cls/``)."""
    if not (root / CUSTOM_DIR).exists():
        raise NotFound
    lines = []
    for split in ("train", "test"):
        lines += _classification_lines(CustomClassification(root, split, num_points=None), split)
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


# ----------------------------------------------------------------------------------------------
# --full: decode every file
# ----------------------------------------------------------------------------------------------

class FileTask(NamedTuple):
    """One file to decode: ``kind`` is "ply", "png" or "h5"; ``param`` is the minimum number of
    points (ply), or the dataset name and its number of classes (h5)."""

    dataset: str
    kind: str
    path: str
    param: object = None


class FileResult(NamedTuple):
    """``problem``: why the file is bad, None when it is fine; ``truncated``: a PNG that decodes
    only in part."""

    task: FileTask
    problem: str | None
    truncated: bool = False


def _visible(paths) -> list[Path]:
    return sorted(p for p in paths if not p.name.startswith(".") and p.is_file())


def _h5_class_count(dataset: str, folder: Path) -> int:
    if dataset in ("modelnet40", "custom"):
        names = folder / "shape_names.txt"
        if names.is_file():
            return len(read_lines(names))
        # A custom set without its names is already reported INVALID by check_custom; its files are still
        # decoded, without a label-range check.
        return MODELNET40_NUM_CLASSES if dataset == "modelnet40" else 2**31 - 1
    return len(SCANOBJECTNN_CLASSES) if dataset == "scanobjectnn" else len(CATEGORIES)


def full_tasks(root: Path, dataset: str, num_points: int) -> list[FileTask]:
    """Every file of ``dataset`` under ``root`` (hidden files such as macOS ``._*`` excluded)."""
    if dataset == "shapenet_render":
        plys = _visible((root / "ShapeNet").glob("*/*.ply"))
        pngs = _visible(p for p in (root / "ShapeNetRendering").glob("*/*/rendering/*")
                        if p.suffix.lower() == ".png")
        return ([FileTask(dataset, "ply", str(p), num_points) for p in plys]
                + [FileTask(dataset, "png", str(p)) for p in pngs])
    if dataset == "modelnet40":
        folders = [root / MODELNET40_DIR]
    elif dataset == "custom":
        folders = [root / CUSTOM_DIR]
    elif dataset == "shapenet_part":
        folders = [root / SHAPENET_PART_DIR]
    else:
        folders = []
        for variant in VARIANTS:
            try:
                folders.append(find_variant_dir(root, variant))
            except DatasetNotFoundError:
                continue
    files: dict[Path, int] = {}
    for folder in folders:
        h5 = _visible(folder.glob("*.h5"))
        num_classes = _h5_class_count(dataset, folder) if h5 else 0
        for f in h5:
            files.setdefault(f, num_classes)
    if dataset == "scanobjectnn" and (root / "ScanObjectNN").is_dir():
        for f in _visible((root / "ScanObjectNN").glob("**/*.h5")):
            files.setdefault(f, len(SCANOBJECTNN_CLASSES))
    return [FileTask(dataset, "h5", str(f), (dataset, n)) for f, n in sorted(files.items())]


def _check_h5(path: str, dataset: str, num_classes: int) -> None:
    """Read every array of an h5 file, then validate data/label (and pid) as the loaders do."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(f"{path}: cannot open as HDF5 ({e})") from e
    with f:
        arrays: list[tuple[str, h5py.Dataset]] = []
        f.visititems(lambda name, obj: arrays.append((name, obj))
                     if isinstance(obj, h5py.Dataset) else None)
        for name, ds in arrays:
            try:
                ds[()]
            except (OSError, ValueError) as e:
                raise DatasetError(f"{path}: cannot read array '{name}' {ds.shape} ({e})") from e
    if dataset == "shapenet_part":
        read_part_file(Path(path), None)
    else:
        load_h5_split([Path(path)], None, num_classes)


def check_file(task: FileTask) -> FileResult:
    """Decode one file; never raises for a problem with the file's content."""
    try:
        if task.kind == "png":
            _, truncated = load_image_rgb(task.path)
            return FileResult(task, None, truncated)
        if task.kind == "ply":
            pts = read_ply_points(task.path)  # (N, 3)
            if pts.shape[0] < task.param:
                return FileResult(task, f"has {pts.shape[0]} points, fewer than --num_points "
                                        f"{task.param}")
            bad = ~np.isfinite(pts).all(axis=1)  # (N,)
            if bad.any():
                return FileResult(task, f"NaN/inf coordinates (first bad point index "
                                        f"{int(np.flatnonzero(bad)[0])})")
            return FileResult(task, None)
        _check_h5(task.path, *task.param)
        return FileResult(task, None)
    except (DatasetError, OSError, KeyError, RuntimeError) as e:
        msg = str(e)
        prefix = f"{task.path}: "
        return FileResult(task, msg[len(prefix):] if msg.startswith(prefix) else msg)


def _check_chunk(tasks: list[FileTask]) -> list[FileResult]:
    return [check_file(t) for t in tasks]


def decode_all(tasks: list[FileTask], workers: int) -> list[FileResult]:
    """:func:`check_file` over every task, in chunks over ``workers`` processes (inline for 1),
    with progress on stderr (a bar on a terminal, a few plain lines in a log). Results in task order."""
    size = max(1, min(256, len(tasks) // max(1, 8 * workers)))
    chunks = [tasks[i:i + size] for i in range(0, len(tasks), size)]
    with Runner(workers, True) as runner:
        per_chunk = runner.map(_check_chunk, chunks, "decoding", weights=[len(c) for c in chunks], unit="file")
    return [result for chunk in per_chunk for result in chunk]


def full_report(dataset: str, results: list[FileResult], workers: int) -> tuple[list[str], int]:
    """(lines for ``dataset``, number of bad files)."""
    mine = [r for r in results if r.task.dataset == dataset]
    kinds = Counter(r.task.kind for r in mine)
    bad = [r for r in mine if r.problem is not None]
    cut = [r for r in mine if r.truncated]
    lines = [f"  full decode: {len(mine)} files ("
             + ", ".join(f"{kinds[k]} {k.upper()}" for k in ("ply", "png", "h5") if kinds[k])
             + f"; {workers} worker{'s' if workers != 1 else ''}): {len(bad)} bad, "
             f"{len(cut)} truncated"]
    lines += [f"  BAD {r.task.path}: {r.problem}" for r in bad]
    lines += [f"  truncated (loads in part, as in the original; not an error): {r.task.path}"
              for r in cut]
    return lines, len(bad)


def _dataset_checks(root: Path, max_read: int, num_points: int) -> dict[str, Callable[[], tuple[str, list[str]]]]:
    """name -> () -> (what was decoded, for the "ok" line; report lines). The h5 loaders read every cloud
    and label, so only the sampled ShapeNetRender check has something to say there."""
    return {
        "shapenet_render": lambda: check_shapenet_render(root, max_read, num_points),
        "modelnet40": lambda: ("", check_modelnet40(root)),
        "scanobjectnn": lambda: ("", check_scanobjectnn(root)),
        "shapenet_part": lambda: ("", check_shapenet_part(root)),
        "custom": lambda: ("", check_custom(root)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data", help="data root (default: data)")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated subset of {','.join(DATASETS)} (default: all; "
                             "a dataset named here must be present)")
    parser.add_argument("--max-read", type=int, default=50,
                        help="ShapeNetRender objects whose cloud and first image are read "
                             "(default: 50; ignored with --full)")
    parser.add_argument("--full", action="store_true",
                        help="decode every file of every dataset (every view PNG, PLY and h5 "
                             "array) and list every bad file")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="processes for --full (default: min(4, CPUs))")
    parser.add_argument("--num_points", type=int, default=2048,
                        help="points a ShapeNetRender cloud must have at least, as in the run "
                             "(default: 2048)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    requested = DATASETS if args.only is None else tuple(
        s.strip() for s in args.only.split(",") if s.strip())
    unknown = [s for s in requested if s not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {','.join(DATASETS)}")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    problem = root_is_file_message(root)
    if problem:
        print(f"FAILED: {problem}.", file=sys.stderr)
        return 1

    max_read = 0 if args.full else args.max_read
    checks = _dataset_checks(root, max_read, args.num_points)
    print(f"data root: {root.resolve()}")
    failed, missing, found = [], [], []
    for name in requested:
        try:
            note, lines = checks[name]()
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
        print(f"{name}: ok" + (f" ({note})" if note else ""))
        print("\n".join(lines))
    if args.full:
        present = [n for n in requested if n not in missing]
        tasks = [t for n in present for t in full_tasks(root, n, args.num_points)]
        results = decode_all(tasks, args.workers)
        for name in present:
            lines, n_bad = full_report(name, results, args.workers)
            print(f"{name}: {'FAILED' if n_bad else 'ok'} (--full)")
            print("\n".join(lines))
            if n_bad:
                print(f"{name}: {n_bad} bad file(s), listed above", file=sys.stderr)
                if name not in failed:
                    failed.append(name)
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
