"""Your own meshes -> a data root in the published layouts (pretraining pairs + a classification set).

Usage::

    python -m datasets.prepare_meshes --input DIR --output ROOT [--num_points 2048] [--views 24]
        [--seed 0] [--up_axis y|z] [--test_fraction 0.2] [--workers 4] [--force] [--quiet]

    python train_crossmodal.py --data_root ROOT ...          # pretrain on your objects
    CustomClassification(ROOT, "train")                       # datasets.custom: the labelled clouds

Input layouts (class names are the folder names)::

    DIR/<class>/<name>.<ext>                  # train/test split drawn here (--test_fraction)
    DIR/<class>/{train,test}/<name>.<ext>     # ModelNet's raw layout: the split comes from the folders

``<ext>``: any of ``datasets.making.meshes.MESH_EXTENSIONS`` (OFF, OBJ, PLY, STL, GLB, GLTF; case-insensitive).
Other files (materials, textures, notes) are listed as ignored; hidden files and folders are skipped.
The two layouts cannot be mixed. An object is named after its file (``chair/a.obj`` -> ``a``); when two
files of a class share a name, each is named after its path inside the class folder with the extension
(``a_obj`` and ``a_off``, ``train__x_off`` and ``test__x_off``).

Written under ROOT::

    ShapeNet/<class>/<object>.ply                          # --num_points surface samples, binary PLY
    ShapeNetRendering/<class>/<object>/rendering/00.png .. # --views 137x137 RGBA renders
        renderings.txt, rendering_metadata.txt             # view names; az el 0 ratio fov per view
    custom_cls/ply_data_{train,test}<i>.h5                 # data f32 (N, P, 3), label int64 (N, 1)
        shape_names.txt, train_files.txt, test_files.txt, objects.json, objects.csv
    PREPARED.json                                          # settings, counts, version (written last)
    prepare_report.json                                    # this run: usable/skipped per class, reasons
    .prepare/                                              # settings, lock, one completion mark per object

Each object (see ``datasets.making.meshes`` for reading and validation): the mesh is read (scenes merged),
``--up_axis z`` turns z-up input into y-up, then the bounding box is centred and its diagonal scaled to 1
(ShapeNetCore v1, like the published clouds and renderings). The PLY holds ``--num_points`` points drawn
uniformly over the surface area. The renders follow 3D-R2N2 (as ``datasets.synthetic`` does): azimuth
uniform in [0, 360), elevation uniform in [25, 30] degrees, no in-plane rotation, camera distance
ratio uniform in [0.7, 0.9] x 1.75, Blender's default field of view (49.13 degrees), 137x137 RGBA with a
transparent background, Lambertian shading with two lights fixed to the camera. Colour: a single neutral
grey for every object (:data:`ALBEDO`); textures, materials and vertex colours are ignored, because most
user meshes carry none, and a per-object colour would be a cue tied to no class. The classification set
holds the same samples as the PLY, normalised to the unit sphere (centroid at the origin, largest norm 1)
like ModelNet40's HDF5 files; rows are sorted by class then object, in files of at most 2048 rows.

Split: ModelNet's layout keeps its folders. Otherwise each class is split on its own with a seeded
shuffle: round(test_fraction x n) test objects, at least one for every class with >= 2 objects and at
least one train object; a class with a single object is train only.

Failures: a file that cannot be read (a dangling or looping symbolic link included) or is degenerate is
reported with the reason and skipped. An output that cannot be written (read-only, full disk) stops the
run with one line naming the path (exit status 2); the object being written is removed, finished objects
are kept, and no temporary file or folder stays. The run
ends with a table (usable / skipped per class) also written to ``prepare_report.json``; the exit status
is 1 when no object is usable or a class is left without objects (named), else 0. In that case the
classification set and PREPARED.json are not written (prepared objects are kept for the next run).

Determinism, resume, idempotence: each object's generator comes from (seed, class, object name), so the
bytes written depend neither on ``--workers`` nor on order. An object's render folder is written under a
temporary name and renamed, its PLY likewise, then a completion mark (``.prepare/done/<class>/<object>
.json``, with the source file's SHA-256) is written last; an object without a valid mark is redone, so
a killed run resumes where it stopped and never leaves a half-written object that counts as done. A
rerun with the same input and settings rewrites nothing but the classification set, which is rebuilt
from the PLYs (same bytes). Objects whose source file is gone are removed. Changing ``--num_points``,
``--views``, ``--seed`` or ``--up_axis`` on an existing ROOT fails unless ``--force`` (which rebuilds
everything); ``--test_fraction`` only affects the classification set and may change freely.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import errno
import hashlib
import io
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from datasets.custom import CUSTOM_DIR
from datasets.io import DatasetError, read_ply_points, write_ply
from datasets.making import render as rd
from datasets.making.common import face_normals, text_key, unit_sphere, write_split_files
from datasets.making.meshes import (COMPANION_EXTENSIONS, MESH_EXTENSIONS, UP_AXES, load_mesh,
                                    normalize_mesh, sample_surface, unreadable_reason)
from datasets.making.parallel import Runner
from datasets.making.render import IMAGE_SIZE
from util.fileio import DirLock, DiskFullError, LockHeldError, atomic_write_text, read_json

__all__ = ["prepare", "main", "PrepareError", "Source", "scan_input", "object_rng",
           "render_views", "split_objects", "VERSION", "MARKER", "REPORT", "CUSTOM_DIR", "ALBEDO"]

VERSION = 1
MARKER = "PREPARED.json"
REPORT = "prepare_report.json"
STATE_DIR = ".prepare"
ROWS_PER_FILE = 2048
ALBEDO = (0.72, 0.72, 0.72)  # neutral light grey, the same for every object
OUTPUTS = ("ShapeNet", "ShapeNetRendering", CUSTOM_DIR, MARKER, REPORT, STATE_DIR)
SPLITS = ("train", "test")
TMP_SUFFIX = ".tmp"


class PrepareError(DatasetError):
    """The job cannot start or finish (bad arguments, input layout, or an output ROOT in the way)."""


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def _write_error(error: OSError, root: Path, target: Path | None = None) -> PrepareError:
    """One line for an OSError raised while writing under ``--output root``, naming the path (the
    error's file, else ``target``, the file being written, else ``root``) and what to do; the writers
    remove their partial files first."""
    if isinstance(error, DiskFullError):
        return PrepareError(f"--output {root}: {error}")
    path = error.filename or target or root
    reason = error.strerror or str(error)
    if error.errno in _DISK_FULL:
        return PrepareError(f"--output {root}: no space left on the device holding {path} ({reason}); "
                            "nothing partial was left: free disk space (or choose another --output) and "
                            "run the same command again (finished objects are kept)")
    if error.errno in _NOT_WRITABLE:
        return PrepareError(f"--output {root}: cannot write {path} ({reason}); choose a writable "
                            "--output folder")
    return PrepareError(f"--output {root}: cannot write {path} ({reason})")


@dataclass(frozen=True)
class Source:
    """One input mesh: class folder, object name, split from the folder layout (None: drawn later),
    the file, and its path relative to --input (POSIX)."""

    cls: str
    name: str
    split: str | None
    path: str
    rel: str


# ----------------------------------------------------------------------------------------------
# Input scanning
# ----------------------------------------------------------------------------------------------


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _class_meshes(root: Path, folder: Path, ignored: list[dict]) -> tuple[list[tuple[Path, str | None]], bool]:
    """The mesh files of one class folder as (file, split from its train/ or test/ folder, else None),
    and whether the folder has train/test folders; what is not a mesh is appended to ``ignored``."""
    cls = folder.name
    files: list[tuple[Path, str | None]] = []
    children = _visible(folder)
    split_dirs = [c for c in children if c.is_dir() and c.name in SPLITS]
    for c in children:
        if c.is_dir():
            if c.name not in SPLITS:
                ignored.append({"file": c.relative_to(root).as_posix() + "/",
                                "reason": "sub-folder other than train/ or test/ (not searched)"})
                continue
            for f in _visible(c):
                files.append((f, c.name))
        else:
            files.append((c, None))
    meshes: list[tuple[Path, str | None]] = []
    for f, split in files:
        rel = f.relative_to(root).as_posix()
        ext = f.suffix.lower()
        if f.is_dir():
            ignored.append({"file": rel + "/", "reason": "folder inside a split folder "
                                                         "(not searched)"})
        elif ext in MESH_EXTENSIONS:
            if split_dirs and split is None:
                raise PrepareError(f"--input {root}: {rel} lies next to the train/test folders "
                                   f"of class '{cls}'; move it into train/ or test/")
            meshes.append((f, split))
        elif ext in COMPANION_EXTENSIONS:
            ignored.append({"file": rel, "reason": "companion file (material, texture or "
                                                   "buffer), read with its mesh"})
        else:
            ignored.append({"file": rel, "reason": f"unsupported extension {f.suffix!r} "
                                                   f"(meshes: {', '.join(MESH_EXTENSIONS)})"})
    return meshes, bool(split_dirs)


def _named_sources(root: Path, found: dict[str, list[tuple[Path, str | None]]]) -> list[Source]:
    """One :class:`Source` per mesh file, named after its file (after its path inside the class folder
    when two files of a class share a stem); two files mapping to one object raise PrepareError."""
    sources = []
    for cls, meshes in found.items():
        stems: dict[str, int] = {}
        for f, _ in meshes:
            stems[f.stem] = stems.get(f.stem, 0) + 1
        for f, split in meshes:
            inside = f.relative_to(root / cls)
            if stems[f.stem] == 1:
                name = f.stem
            else:  # same stem twice in the class: name it after its path and extension
                name = "__".join(inside.parts[:-1] + (f"{f.stem}_{f.suffix[1:].lower()}",))
            sources.append(Source(cls, name, split, str(f), f.relative_to(root).as_posix()))
    by_key: dict[tuple[str, str], Source] = {}
    for s in sources:
        if (s.cls, s.name) in by_key:
            raise PrepareError(f"--input {root}: {by_key[(s.cls, s.name)].rel} and {s.rel} both map to "
                               f"object '{s.name}'; rename one of them")
        by_key[(s.cls, s.name)] = s
    return sources


def scan_input(input_dir: str | os.PathLike) -> tuple[list[Source], list[dict], str, list[str]]:
    """Finds the meshes under ``input_dir``.

    Returns:
        (sources sorted by class and name, ignored files as ``{"file", "reason"}`` with paths
        relative to ``input_dir``, layout ``"folders"`` or ``"modelnet"``, class names sorted; a class
        folder holding no mesh file is still a class, so that the run reports it as empty).

    Raises:
        PrepareError when ``input_dir`` is not a folder, holds no class folder, or mixes the layouts.
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise PrepareError(f"--input {root}: not a folder (expected DIR/<class>/<name>.<ext> or "
                           "DIR/<class>/{train,test}/<name>.<ext>)")
    ignored: list[dict] = []
    found: dict[str, list[tuple[Path, str | None]]] = {}
    split_classes, flat_classes = [], []
    for entry in _visible(root):
        if not entry.is_dir():
            ignored.append({"file": entry.name, "reason": "not inside a class folder"})
            continue
        meshes, has_split_dirs = _class_meshes(root, entry, ignored)
        if has_split_dirs:
            split_classes.append(entry.name)
        elif meshes:  # an empty class folder says nothing about the layout
            flat_classes.append(entry.name)
        found[entry.name] = meshes
    if not found:
        raise PrepareError(f"--input {root}: no class folder (expected DIR/<class>/<name>.<ext>)")
    if split_classes and flat_classes:
        raise PrepareError(
            f"--input {root}: mixed layouts: classes {split_classes[:5]} have train/test folders, "
            f"classes {flat_classes[:5]} do not; use one layout for every class")
    sources = _named_sources(root, found)
    return (sorted(sources, key=lambda s: (s.cls, s.name)), ignored,
            "modelnet" if split_classes else "folders", sorted(found))


def _digest(path: Path) -> str:
    """SHA-256 of a mesh file, plus of the external buffers a .gltf file names (its geometry)."""
    h = hashlib.sha256(path.read_bytes())
    if path.suffix.lower() == ".gltf":
        try:
            buffers = json.loads(path.read_text(encoding="utf-8")).get("buffers", [])
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            buffers = []  # unreadable: the worker reports why
        for b in buffers if isinstance(buffers, list) else []:
            uri = b.get("uri") if isinstance(b, dict) else None
            if isinstance(uri, str) and not uri.startswith("data:") and (path.parent / uri).is_file():
                h.update((path.parent / uri).read_bytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# Per-object work (runs in worker processes: top-level, picklable)
# ----------------------------------------------------------------------------------------------


def object_rng(seed: int, cls: str, name: str) -> np.random.Generator:
    """The generator of one object: depends only on (seed, class, object name)."""
    return np.random.default_rng([int(seed), text_key("prepare_meshes"), text_key(cls), text_key(name)])


def render_views(mesh, rng: np.random.Generator, n_views: int, out_dir: Path,
                 albedo: Sequence[float] = ALBEDO, size: int = IMAGE_SIZE) -> None:
    """Writes ``00.png ..`` (size x size RGBA, transparent background), ``renderings.txt`` and
    ``rendering_metadata.txt`` for a mesh normalised to bounding-box diagonal 1 (vertices (V, 3),
    faces (F, 3)), every face coloured ``albedo``, through :func:`datasets.making.render.render_views`
    (the cameras are drawn from ``rng``; see the module docstring)."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    colours = np.broadcast_to(np.asarray(albedo, dtype=np.float64), (len(faces), 3))  # (F, 3)
    rd.render_views(rd.RayCaster(vertices, faces), vertices, face_normals(vertices, faces), colours, rng,
                    n_views, out_dir, size)


def _paths(root: Path, cls: str, name: str) -> dict[str, Path]:
    return {"ply": root / "ShapeNet" / cls / f"{name}.ply",
            "render": root / "ShapeNetRendering" / cls / name,
            "mark": root / STATE_DIR / "done" / cls / f"{name}.json"}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _remove_quietly(*paths: Path) -> None:
    """:func:`_remove` each path as far as the file system allows (cleaning up after a failed write,
    e.g. on a read-only or full disk, must not hide the error that caused it)."""
    for path in paths:
        with contextlib.suppress(OSError):
            _remove(path)


def _prepare_object(task: dict) -> dict:
    """Writes one object's PLY, renders and completion mark; returns ``{"status": "ok"}`` or
    ``{"status": "skipped", "reason": ...}`` for a file that cannot be used."""
    root, src, settings = Path(task["root"]), Source(**task["source"]), task["settings"]
    paths = _paths(root, src.cls, src.name)
    try:
        mesh = normalize_mesh(load_mesh(src.path, up_axis=settings["up_axis"]))
    except DatasetError as e:
        _remove_quietly(paths["mark"], paths["ply"], paths["render"])  # an earlier version's outputs
        return {"status": "skipped", "reason": getattr(e, "reason", str(e))}
    rng = object_rng(settings["seed"], src.cls, src.name)
    points = sample_surface(mesh, settings["num_points"], rng)  # (P, 3) float32
    tag = f"{os.getpid()}{TMP_SUFFIX}"
    tmp_render = paths["render"].with_name(f".{src.name}.{tag}")
    tmp_ply = paths["ply"].with_name(f".{src.name}.ply.{tag}")
    target = paths["render"]  # what is being written, for the message of a failed write
    try:
        for p in (paths["mark"], paths["ply"], paths["render"], tmp_render):  # leftovers of an unfinished run
            _remove(p)
        (tmp_render / "rendering").mkdir(parents=True)
        render_views(mesh, rng, settings["views"], tmp_render / "rendering")
        os.replace(tmp_render, paths["render"])
        target = paths["ply"]
        write_ply(tmp_ply, points)
        os.replace(tmp_ply, paths["ply"])
        mark = {"source": src.rel, "sha256": task["sha256"], "class": src.cls, "object": src.name,
                "split": src.split, "settings": settings}
        target = paths["mark"]
        atomic_write_text(paths["mark"], json.dumps(mark, indent=1, sort_keys=True) + "\n")
    except BaseException as e:  # nothing of this object stays: it is redone by the next run
        _remove_quietly(tmp_render, tmp_ply, paths["mark"], paths["ply"], paths["render"])
        if isinstance(e, OSError):
            raise _write_error(e, root, target) from None
        raise
    return {"status": "ok"}


# ----------------------------------------------------------------------------------------------
# Classification set
# ----------------------------------------------------------------------------------------------


def split_objects(names_by_class: dict[str, list[str]], seed: int,
                  test_fraction: float) -> dict[tuple[str, str], str]:
    """Stratified seeded split: ``{(class, name): "train" | "test"}``.

    Per class of n objects: round(test_fraction * n) test objects, clipped to [1, n - 1] when
    n >= 2; a single object is train. The shuffle depends on (seed, class) and the sorted names."""
    out = {}
    for cls, names in names_by_class.items():
        names = sorted(names)
        n = len(names)
        n_test = min(n - 1, max(1, int(math.floor(test_fraction * n + 0.5)))) if n >= 2 else 0
        order = np.random.default_rng([int(seed), text_key("split"), text_key(cls)]).permutation(n)
        test = {names[i] for i in order[:n_test]}
        out.update({(cls, nm): ("test" if nm in test else "train") for nm in names})
    return out


def _write_classification(root: Path, objects: list[dict], class_names: list[str],
                          num_points: int) -> dict:
    """Writes ROOT/custom_cls from the objects' PLYs (via a temporary folder, then renamed);
    objects: dicts with class, object, split, source. Returns counts per split."""
    tmp = root / f".{CUSTOM_DIR}.{os.getpid()}{TMP_SUFFIX}"
    _remove(tmp)
    tmp.mkdir()
    try:
        counts = _write_classification_files(root, tmp, objects, class_names, num_points)
    except BaseException:
        _remove_quietly(tmp)
        raise
    final, old = root / CUSTOM_DIR, root / f".{CUSTOM_DIR}.old.{os.getpid()}{TMP_SUFFIX}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    _remove(old)
    return counts


def _write_classification_files(root: Path, tmp: Path, objects: list[dict], class_names: list[str],
                                num_points: int) -> dict:
    """Writes the classification set's files into the folder ``tmp``; returns counts per split."""
    label_of = {c: i for i, c in enumerate(class_names)}
    rows_out, counts = [], {}
    for split in SPLITS:
        rows = sorted((o for o in objects if o["split"] == split),
                      key=lambda o: (label_of[o["class"]], o["object"]))
        clouds = [unit_sphere(read_ply_points(_paths(root, o["class"], o["object"])["ply"]))
                  for o in rows]
        data = (np.stack(clouds) if clouds else np.zeros((0, num_points, 3))).astype(np.float32)
        # data: (N, P, 3)
        labels = np.array([label_of[o["class"]] for o in rows], dtype=np.int64).reshape(-1, 1)
        files = write_split_files(tmp, f"ply_data_{split}", {"data": data, "label": labels}, ROWS_PER_FILE)
        rows_out += [{"h5_file": files[j // ROWS_PER_FILE], "row": j % ROWS_PER_FILE, "class": o["class"],
                      "label": label_of[o["class"]], "split": split, "object": o["object"],
                      "source": o["source"]} for j, o in enumerate(rows)]
        (tmp / f"{split}_files.txt").write_text("".join(f"{CUSTOM_DIR}/{f}\n" for f in files))
        counts[split] = len(rows)
    (tmp / "shape_names.txt").write_text("".join(f"{c}\n" for c in class_names))
    (tmp / "objects.json").write_text(json.dumps(rows_out, indent=1) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows_out[0]) if rows_out else ["h5_file"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows_out)
    (tmp / "objects.csv").write_text(buf.getvalue())
    return counts


# ----------------------------------------------------------------------------------------------
# Orchestration
# ----------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict | None:
    return read_json(path, PrepareError, "delete it or rerun with --force")


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """ROOT/.prepare/lock (util.fileio.DirLock): one run per ROOT at a time (a dead holder's lock is taken)."""
    lock = DirLock(root / STATE_DIR / "lock", "another prepare_meshes run")
    try:
        note = lock.acquire()
    except LockHeldError as err:
        raise PrepareError(str(err)) from None
    if note:
        print(note, file=sys.stderr, flush=True)
    try:
        yield
    finally:
        lock.release()


def _refuse_foreign(root: Path, input_dir: Path) -> dict | None:
    """Refuses (before writing anything) an output inside the input or the reverse, and a ROOT
    holding outputs this tool did not write. Returns the settings ROOT was prepared with, if any."""
    r, i = root.resolve(), input_dir.resolve()
    if r == i or i in r.parents or r in i.parents:
        raise PrepareError(f"--output {root} and --input {input_dir} must not contain each other")
    state = root / STATE_DIR / "settings.json"
    ours = _read_json(state) if state.is_file() else None
    present = [n for n in OUTPUTS if (root / n).exists() and n != STATE_DIR]
    if ours is None and present:
        raise PrepareError(f"--output {root} already holds {', '.join(present)} not written by "
                           "prepare_meshes (no .prepare/settings.json); choose an empty or new "
                           "--output folder (other data sets in it, e.g. modelnet40_ply_hdf5_2048, "
                           "are fine)")
    return ours


def _apply_settings(root: Path, ours: dict | None, settings: dict, force: bool) -> None:
    """Refuses a ROOT prepared with other settings unless ``force`` (then everything this tool wrote
    there is removed); records the settings."""
    if ours is not None and ours != settings:
        if not force:
            diff = ", ".join(f"{k}: {ours.get(k)!r} there, {settings[k]!r} now" for k in settings
                             if ours.get(k) != settings[k])
            raise PrepareError(f"--output {root} was prepared with other settings ({diff}); pass "
                               "--force to rebuild it with the new ones, or choose another --output")
        for n in OUTPUTS:
            if n != STATE_DIR:
                _remove(root / n)
        shutil.rmtree(root / STATE_DIR / "done", ignore_errors=True)
    atomic_write_text(root / STATE_DIR / "settings.json",
                      json.dumps(settings, indent=1, sort_keys=True) + "\n")


def _clean(root: Path, classes: list[str], sources: list[Source]) -> int:
    """Removes temporary leftovers of killed runs (hidden ``*.tmp`` files and folders, including
    ``util.fileio``'s) and every object (PLY, renders, mark) or class folder that the current input
    no longer has. Returns the number of objects removed."""
    keep = {(s.cls, s.name) for s in sources}
    removed = set()
    for p in root.glob(f".{CUSTOM_DIR}.*{TMP_SUFFIX}"):
        _remove(p)
    for top, suffix in (("ShapeNet", ".ply"), ("ShapeNetRendering", ""),
                        (f"{STATE_DIR}/done", ".json")):
        base = root / top
        if not base.is_dir():
            continue
        for cdir in sorted(base.iterdir()):
            if not cdir.is_dir():
                _remove(cdir)
                continue
            if cdir.name not in classes:
                removed.update((cdir.name, p.name.removesuffix(suffix))
                               for p in cdir.iterdir() if not p.name.startswith("."))
                _remove(cdir)
                continue
            for p in sorted(cdir.iterdir()):
                if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX):
                    _remove(p)
                    continue
                name = p.name.removesuffix(suffix)
                if (cdir.name, name) not in keep:
                    removed.add((cdir.name, name))
                    _remove(p)
    return len(removed)


def _is_done(root: Path, src: Source, digest: str, settings: dict) -> bool:
    paths = _paths(root, src.cls, src.name)
    try:
        mark = json.loads(paths["mark"].read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return (mark.get("sha256") == digest and mark.get("source") == src.rel
            and mark.get("settings") == settings and paths["ply"].is_file()
            and (paths["render"] / "rendering" / "renderings.txt").is_file())


def _table(per_class: dict[str, dict], skipped: list[dict], empty: list[str]) -> str:
    rows = [("class", "usable", "train", "test", "skipped")]
    for cls, c in per_class.items():
        rows.append((cls, str(c["usable"]), str(c.get("train", "-")), str(c.get("test", "-")),
                     str(c["skipped"])))
    tot = [sum(c[k] for c in per_class.values()) for k in ("usable", "skipped")]
    train = sum(c.get("train", 0) for c in per_class.values())
    test = sum(c.get("test", 0) for c in per_class.values())
    rows.append(("total", str(tot[0]), str(train), str(test), str(tot[1])))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join([r[0].ljust(widths[0])] + [r[j].rjust(widths[j]) for j in range(1, 5)])
             for r in rows]
    if skipped:
        lines.append(f"skipped files ({len(skipped)}):")
        lines += [f"  {s['file']}: {s['reason']}" for s in skipped]
    if empty:
        lines.append(f"classes left without a usable object: {', '.join(empty)}")
    return "\n".join(lines)


def prepare(input_dir: str | os.PathLike, output_root: str | os.PathLike, num_points: int = 2048,
            views: int = 24, seed: int = 0, up_axis: str = "y", test_fraction: float = 0.2,
            workers: int = 1, force: bool = False, progress: bool = True) -> dict:
    """Prepares ``input_dir``'s meshes into ``output_root`` (see the module docstring).

    Returns the report (also written to ROOT/prepare_report.json): ``{"ok", "message", "input",
    "output", "layout", "classes": {cls: {"usable", "skipped", "train", "test"}}, "skipped":
    [{"file", "class", "reason"}], "ignored": [{"file", "reason"}], "empty_classes", "run":
    {"prepared", "reused", "removed", "workers", "seconds"}}``; ``ok`` is False when no object is
    usable or a class is left empty.

    Raises:
        PrepareError for invalid arguments, an unusable input layout, an output ROOT that holds
        other data or was prepared with other settings (without ``force``), or an output that
        cannot be written (read-only, full disk: the message names the path; no partial file stays).
    """
    t0 = time.perf_counter()
    if int(num_points) < 1 or int(views) < 1:
        raise PrepareError(f"--num_points and --views must be >= 1 (got {num_points}, {views})")
    if up_axis not in UP_AXES:
        raise PrepareError(f"--up_axis must be one of {UP_AXES}, got {up_axis!r}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise PrepareError(f"--test_fraction must be in (0, 1), got {test_fraction}")
    input_dir, root = Path(input_dir), Path(output_root)
    sources, ignored, layout, classes = scan_input(input_dir)
    settings = {"version": VERSION, "num_points": int(num_points), "views": int(views),
                "seed": int(seed), "up_axis": up_axis}
    ours = _refuse_foreign(root, input_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _locked(root):
            _apply_settings(root, ours, settings, force)
            removed = _clean(root, classes, sources)
            results, reused = _prepare_objects(root, classes, sources, settings, workers, progress)
            report = {"input": str(input_dir), "output": str(root), "layout": layout, "ignored": ignored}
            report.update(_finish(root, classes, sources, results, layout, settings, seed, test_fraction))
            report["run"] = {"prepared": sum(1 for r in results.values() if r["status"] == "ok"),
                             "reused": reused, "removed": removed, "workers": int(workers),
                             "seconds": round(time.perf_counter() - t0, 3)}
            atomic_write_text(root / REPORT, json.dumps(report, indent=1) + "\n")
    except OSError as e:
        raise _write_error(e, root) from None
    return report


def _prepare_objects(root: Path, classes: list[str], sources: list[Source], settings: dict, workers: int,
                     progress: bool) -> tuple[dict[Source, dict], int]:
    """Prepares every source that is not done yet; a file that cannot be opened (a dangling or looping
    symbolic link, no permission) is skipped with the reason. Returns ({source: {"status", "reason"?}}
    for the sources handled in this run, the number of sources already done)."""
    for top in ("ShapeNet", "ShapeNetRendering", f"{STATE_DIR}/done"):
        for cls in classes:
            (root / top / cls).mkdir(parents=True, exist_ok=True)
    digests, results = {}, {}
    for s in sources:
        try:
            digests[s] = _digest(Path(s.path))
        except OSError as e:
            results[s] = {"status": "skipped", "reason": unreadable_reason(s.path, e)}
            _remove_quietly(*_paths(root, s.cls, s.name).values())  # an earlier version's outputs
    todo = [s for s in digests if not _is_done(root, s, digests[s], settings)]
    # Anything that was complete is either current or removed now: no stale marker stays.
    (root / MARKER).unlink(missing_ok=True)
    tasks = [{"root": str(root), "source": asdict(s), "sha256": digests[s], "settings": settings}
             for s in todo]
    with Runner(workers, progress) as runner:
        results.update(zip(todo, runner.map(_prepare_object, tasks, "prepare_meshes", leave=True)))
    return results, len(digests) - len(todo)


def _finish(root: Path, classes: list[str], sources: list[Source], results: dict[Source, dict], layout: str,
            settings: dict, seed: int, test_fraction: float) -> dict:
    """Counts usable and skipped objects, writes the classification set and PREPARED.json when every
    class has a usable object (else removes the set). Returns the report's ``ok``, ``message``,
    ``classes``, ``skipped``, ``empty_classes`` and ``table``."""
    per_class = {c: {"usable": 0, "skipped": 0} for c in classes}
    usable, skipped = [], []
    for s in sources:
        r = results.get(s, {"status": "ok"})
        if r["status"] == "ok":
            per_class[s.cls]["usable"] += 1
            usable.append(s)
        else:
            per_class[s.cls]["skipped"] += 1
            skipped.append({"file": s.rel, "class": s.cls, "reason": r["reason"]})
    empty = [c for c in classes if per_class[c]["usable"] == 0]
    report = {"classes": per_class, "skipped": skipped, "empty_classes": empty}
    if not usable or empty:
        _remove(root / CUSTOM_DIR)
        report["ok"] = False
        report["message"] = ("no usable object" if not usable else
                             f"class(es) left without a usable object: {', '.join(empty)}; fix "
                             "or remove their files (or the class folders) and run again")
    else:
        if layout == "modelnet":
            split = {(s.cls, s.name): s.split for s in usable}
        else:
            names: dict[str, list[str]] = {}
            for s in usable:
                names.setdefault(s.cls, []).append(s.name)
            split = split_objects(names, int(seed), float(test_fraction))
        objects = [{"class": s.cls, "object": s.name, "split": split[(s.cls, s.name)],
                    "source": s.rel} for s in usable]
        counts = _write_classification(root, objects, classes, settings["num_points"])
        for o in objects:
            per_class[o["class"]][o["split"]] = per_class[o["class"]].get(o["split"], 0) + 1
        for c in classes:
            for sp in SPLITS:
                per_class[c].setdefault(sp, 0)
        marker = {"generator": "datasets.prepare_meshes", "version": VERSION,
                  "settings": {**settings, "test_fraction": float(test_fraction),
                               "image_size": IMAGE_SIZE, "albedo": list(ALBEDO)},
                  "layout": layout, "classes": classes,
                  "counts": {"objects": len(usable), "skipped": len(skipped), **counts,
                             "views_per_object": settings["views"], "points_per_object": settings["num_points"]},
                  "folders": ["ShapeNet", "ShapeNetRendering", CUSTOM_DIR]}
        atomic_write_text(root / MARKER, json.dumps(marker, indent=1, sort_keys=True) + "\n")
        report["ok"] = True
        report["message"] = (f"{len(usable)} objects in {len(classes)} classes "
                             f"({counts['train']} train / {counts['test']} test)")
    report["table"] = _table(per_class, skipped, empty)
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m datasets.prepare_meshes",
        description="Turn your own meshes (DIR/<class>/<name>.<ext> or ModelNet's DIR/<class>/"
                    "{train,test}/<name>.<ext>; OFF, OBJ, PLY, STL, GLB, GLTF) into a data root: "
                    "ShapeNetRender-style point clouds + 137x137 renderings (train_crossmodal.py "
                    "--data_root ROOT) and a ModelNet40-style classification set in ROOT/custom_cls.")
    p.add_argument("--input", required=True, help="folder of class folders holding mesh files")
    p.add_argument("--output", required=True, help="data root to write (created if missing)")
    p.add_argument("--num_points", type=int, default=2048,
                   help="surface samples per object (default 2048, the published clouds; "
                        "train_crossmodal.py reads 2048 by default)")
    p.add_argument("--views", type=int, default=24, help="renderings per object (default 24)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--up_axis", choices=UP_AXES, default="y",
                   help="the input's up axis: y (default; ShapeNet, most OBJ/GLTF) or z (rotated to "
                        "y-up; ModelNet's raw OFF files, most STL/CAD exports are z-up)")
    p.add_argument("--test_fraction", type=float, default=0.2,
                   help="test share per class for the folder layout (default 0.2; ignored for "
                        "ModelNet's train/test layout)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="worker processes; the output does not depend on it (default: min(4, CPUs))")
    p.add_argument("--force", action="store_true",
                   help="rebuild an output prepared with other --num_points/--views/--seed/--up_axis")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = prepare(args.input, args.output, num_points=args.num_points, views=args.views,
                         seed=args.seed, up_axis=args.up_axis, test_fraction=args.test_fraction,
                         workers=args.workers, force=args.force, progress=not args.quiet)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report["table"])
    if report["ignored"]:
        shown = "; ".join(f"{i['file']} ({i['reason']})" for i in report["ignored"][:5])
        more = f"; ... ({len(report['ignored'])} in all, listed in the report)" \
            if len(report["ignored"]) > 5 else ""
        print(f"ignored: {shown}{more}")
    run = report["run"]
    print(f"this run: {run['prepared']} prepared, {run['reused']} already done, {run['removed']} "
          f"removed, {run['seconds']:.1f} s; report: {Path(args.output) / REPORT}")
    if report["ok"]:
        print(f"done: {report['message']} under {args.output}")
        return 0
    print(f"error: {report['message']}", file=sys.stderr)
    return 1

