"""Synthetic stand-ins for the four CrossPoint datasets, written in the published on-disk formats.

The machines this project runs on have no internet, so tests, CI and the quickstart use procedurally
generated data that the same loaders read. Objects are assemblies of primitives
(``datasets/synthetic/shapes.py``); classes differ by structure, with random proportions and
optional sub-parts. Shaded views are ray cast with Embree (``datasets/making/render.py``).
``python -m datasets.synthetic`` runs :func:`main` (``datasets/synthetic/__main__.py``).

Usage::

    python -m datasets.synthetic --root data/synthetic --preset small --seed 0 [--workers 2]
    python -m datasets.synthetic --root DIR --preset tiny --only modelnet40,scanobjectnn

    from datasets.synthetic.generator import generate
    summary = generate("data/synthetic", preset="tiny", seed=0)

Layouts written under ROOT (see data/README.md for the real ones):

- ShapeNetRender: ``ShapeNet/<synset>/<object>.ply`` (2048 surface points, binary little-endian
  PLY, float x y z; centred, bounding-box diagonal 1 like ShapeNetCore v1) and
  ``ShapeNetRendering/<synset>/<object>/rendering/{00..NN}.png`` (137x137 RGBA, transparent
  background, flat-shaded ray-cast views) with ``renderings.txt`` and ``rendering_metadata.txt``
  (azimuth, elevation, in-plane rotation, distance ratio, field of view; the views are rendered with
  exactly these numbers, camera distance = ratio * 1.75).
- ModelNet40: ``modelnet40_ply_hdf5_2048/ply_data_{train,test}{i}.h5`` (data float32 (N, 2048, 3),
  label uint8 (N, 1), normal float32 (N, 2048, 3), faceId int32 (N, 2048); unit sphere, y up,
  small random rotation about y), ``shape_names.txt``, ``train_files.txt``, ``test_files.txt``.
  It has more classes than the pretraining set: the shared families plus unseen ones.
- ScanObjectNN: ``ScanObjectNN/main_split/{train,test}.h5`` (OBJ_BG: data float32 (N, 2048, 3),
  label int64 (N,), mask int64 (N, 2048) with -1 = background, 1 = object),
  ``ScanObjectNN/main_split_nobg/`` (OBJ_ONLY, same objects) and PB_T50_RS in
  ``ScanObjectNN/main_split/{training,test}_objectdataset_augmentedrot_scale75.h5`` (same keys,
  5N clouds: each object 5 times, each copy cropped with its box translated by up to 50 % of the
  box size per axis, background included, rotated about the up axis by U(0, 360) degrees and
  scaled per axis by U(0.75, 1.25); see ``_pb_t50_rs_copies``). Each cloud is a simulated depth
  scan of the object standing on a floor (one viewpoint, self-occlusion, occluding clutter, walls,
  sensor noise, missing patches), cropped with the object's enlarged bounding box like ScanObjectNN.
- ShapeNetPart: ``shapenet_part_seg_hdf5_data/ply_data_{train,val,test}0.h5`` (data float32
  (N, 2048, 3), label uint8 (N, 1) category, pid uint8 (N, 2048) global part id in the official
  16-category / 50-part numbering), ``all_object_categories.txt``, ``{train,val,test}_hdf5_file_list.txt``,
  ``overallid_to_catid_partid.json``, ``catid_partid_to_overallid.json``.
- ``contact_sheet.png`` (one render and one point cloud per class, plus samples of every layout;
  drawn by ``datasets.making.contact_sheet``, which draws any data root) and ``SYNTHETIC.json`` (preset,
  seed, version, counts, classes), written last.

Determinism: every object's random generator is derived from (seed, dataset, class, split, index),
so output bytes do not depend on the worker count; HDF5 datasets carry no timestamps and the PNGs
no metadata, so the same seed gives byte-identical files. A run writes into ROOT/.synthetic-tmp-PID
and moves finished dataset folders into place, then writes SYNTHETIC.json: a killed run never leaves
a complete-looking dataset.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import os
import shutil
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from datasets import tables
from datasets.io import write_ply
from datasets.making import render as rd
from datasets.making.common import (face_normals, rot, sample_surface, text_key, unit_sphere, write_h5,
                                    write_split_files)
from datasets.making.contact_sheet import make_contact_sheet
from datasets.making.parallel import Runner
from datasets.provenance import MARKER
from datasets.scanobjectnn import VARIANTS as SCANOBJECTNN_VARIANTS
from datasets.synthetic import shapes as ss
from util.fileio import atomic_write_text, pid_alive, read_json

VERSION = 1
SWAP_NOTE = ".synthetic-swap.json"
TMP_PREFIX = ".synthetic-tmp-"
NUM_POINTS = 2048

DATASETS = ("shapenet_render", "modelnet40", "scanobjectnn", "shapenet_part")
# The key a dataset's marker entry must have to be reused: data written before a layout was added
# (ScanObjectNN before PB_T50_RS) lacks it, and that dataset is generated again (same seed, same
# bytes for the files it already had).
MARKER_NEEDS = {"scanobjectnn": "variant_counts"}
FOLDERS = {
    "shapenet_render": ("ShapeNet", "ShapeNetRendering"),
    "modelnet40": ("modelnet40_ply_hdf5_2048",),
    "scanobjectnn": ("ScanObjectNN",),
    "shapenet_part": ("shapenet_part_seg_hdf5_data",),
}

# The 13 3D-R2N2 / ShapeNetRender classes: (family, ShapeNet synset id); each class name is also the
# name of the synthetic family that stands in for it.
SHAPENET_RENDER_CLASSES = tables.SHAPENET_RENDER_CLASSES
# ModelNet40-style classes: (name in shape_names.txt, family). The first 13 share a family with the
# pretraining set; the rest are unseen during pretraining (transfer, as in the paper).
MODELNET_SHARED = (
    ("airplane", "airplane"), ("bench", "bench"), ("cabinet", "cabinet"), ("car", "car"),
    ("chair", "chair"), ("lamp", "lamp"), ("loudspeaker", "loudspeaker"), ("monitor", "display"),
    ("rifle", "rifle"), ("sofa", "sofa"), ("table", "table"), ("telephone", "telephone"),
    ("watercraft", "watercraft"),
)
MODELNET_UNSEEN = (
    ("bathtub", "bathtub"), ("bed", "bed"), ("bookshelf", "shelf"), ("bottle", "bottle"),
    ("bowl", "bowl"), ("stairs", "stairs"), ("vase", "vase"),
)
# ScanObjectNN's 15 classes in the official label order.
SCANOBJECTNN_CLASSES = tables.SCANOBJECTNN_CLASSES
# ShapeNetPart: (category name as in all_object_categories.txt, synset, family); the family of each
# category is the synthetic family of the same (lower-case) name.
SHAPENET_PART_CATEGORIES = tuple((name.capitalize(), synset, name) for name, synset
                                 in zip(tables.SHAPENET_PART_CATEGORIES, tables.SHAPENET_PART_SYNSETS))
PARTS_PER_CATEGORY = tables.SHAPENET_PART_PARTS_PER_CATEGORY
PART_OFFSETS = tables.SHAPENET_PART_OFFSETS


@dataclass(frozen=True)
class Preset:
    """Counts per class. ``*_classes`` take the first k classes of each list (tiny uses fewer)."""

    render_classes: Sequence[str]  # families from SHAPENET_RENDER_CLASSES
    render_objects: int
    views: int
    modelnet_classes: Sequence[str]  # names from MODELNET_SHARED + MODELNET_UNSEEN
    modelnet: tuple[int, int]  # train, test per class
    scan_classes: int  # first k of SCANOBJECTNN_CLASSES (labels stay the official indices)
    scan: tuple[int, int]
    part: tuple[int, int, int]  # train, val, test per category (always all 16 categories)


_ALL_RENDER = tuple(f for f, _ in SHAPENET_RENDER_CLASSES)
_ALL_MODELNET = tuple(n for n, _ in MODELNET_SHARED + MODELNET_UNSEEN)
PRESETS = {
    "tiny": Preset(("airplane", "chair", "lamp", "table"), 3, 4,
                   ("airplane", "chair", "lamp", "table", "bottle", "bowl"), (4, 2), 6, (4, 2), (3, 1, 2)),
    "small": Preset(_ALL_RENDER, 25, 24, _ALL_MODELNET, (30, 10), 15, (25, 8), (30, 5, 8)),
    "full": Preset(_ALL_RENDER, 400, 24, _ALL_MODELNET, (250, 60), 15, (160, 40), (700, 100, 180)),
}


# ----------------------------------------------------------------------------------------------
# Random generators and small helpers
# ----------------------------------------------------------------------------------------------


def object_rng(seed: int, dataset: str, cls: str, split: str, index: int) -> np.random.Generator:
    """The generator of one object: depends only on (seed, dataset, class, split, index)."""
    return np.random.default_rng([int(seed), text_key(dataset), text_key(cls), text_key(split), int(index)])


def _object_id(seed: int, cls: str, index: int) -> str:
    """A ShapeNet-like 32-hex-digit object id, deterministic in (seed, class, index)."""
    a = zlib.crc32(f"{seed}/{cls}/{index}".encode())
    rng = np.random.default_rng([a, int(seed), int(index)])
    return "".join(f"{x:08x}" for x in rng.integers(0, 2**32, size=4, dtype=np.uint64))


def _palette(rng: np.random.Generator, n_parts: int) -> np.ndarray:
    """Per-part albedo (n_parts, 3) around a random base hue (colour is independent of the class)."""
    h = rng.random()
    s, v = rng.uniform(0.15, 0.75), rng.uniform(0.55, 0.95)
    cols = []
    for _ in range(n_parts):
        if rng.random() < 0.35:
            hh, sv, vv = rng.random(), rng.uniform(0.1, 0.8), rng.uniform(0.3, 0.95)
        else:
            hh, sv, vv = (h + rng.normal(0, 0.04)) % 1.0, np.clip(s + rng.normal(0, 0.1), 0, 1), \
                np.clip(v + rng.normal(0, 0.1), 0.2, 1)
        cols.append(colorsys.hsv_to_rgb(hh, sv, vv))
    return np.asarray(cols, dtype=np.float64)


def _visible_samples(mesh: ss.PartMesh, n: int, rng: np.random.Generator,
                     caster: rd.RayCaster | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n area-uniform samples on the outer surface (points (n, 3), face index (n,))."""
    caster = caster or rd.RayCaster(mesh.vertices, mesh.faces)
    normals = face_normals(mesh.vertices, mesh.faces)
    pts_list, face_list, have = [], [], 0
    for _ in range(4):
        pts, face = sample_surface(mesh, int(n * 1.3) + 64, rng)
        keep = rd.exterior_mask(caster, pts, normals[face], rng, n_dirs=6)
        pts_list.append(pts[keep])
        face_list.append(face[keep])
        have += int(keep.sum())
        if have >= n:
            break
    pts, face = np.concatenate(pts_list), np.concatenate(face_list)
    if len(pts) < n:  # pathological mesh: fall back to plain surface samples
        extra_p, extra_f = sample_surface(mesh, n - len(pts), rng)
        pts, face = np.concatenate([pts, extra_p]), np.concatenate([face, extra_f])
    return pts[:n], face[:n]


# ----------------------------------------------------------------------------------------------
# Per-object work (run in worker processes; everything is a top-level picklable function)
# ----------------------------------------------------------------------------------------------


def _shapenet_render_object(task: tuple) -> str:
    """Writes one object's PLY and its rendering folder under ``tmp``; returns the object id."""
    tmp, seed, family, synset, index, n_views = task
    rng = object_rng(seed, "shapenet_render", family, "all", index)
    mesh = ss.normalize_bbox_diagonal(ss.build_object(family, rng))
    caster = rd.RayCaster(mesh.vertices, mesh.faces)
    pts, _ = _visible_samples(mesh, NUM_POINTS, rng, caster)
    oid = _object_id(seed, family, index)
    write_ply(Path(tmp) / "ShapeNet" / synset / f"{oid}.ply", pts)
    out = Path(tmp) / "ShapeNetRendering" / synset / oid / "rendering"
    out.mkdir(parents=True, exist_ok=True)
    albedo = _palette(rng, len(mesh.part_names))[mesh.face_part]  # (F, 3)
    normals = face_normals(mesh.vertices, mesh.faces)  # (F, 3)
    rd.render_views(caster, mesh.vertices, normals, albedo, rng, n_views, out)
    return oid


def _modelnet_cloud(seed: int, family: str, split: str, index: int) -> dict[str, np.ndarray]:
    rng = object_rng(seed, "modelnet40", family, split, index)
    mesh = ss.normalize_bbox_diagonal(ss.build_object(family, rng))
    pts, face = _visible_samples(mesh, NUM_POINTS, rng)
    R = rot("y", rng.uniform(-np.pi / 6, np.pi / 6))  # ModelNet40 is roughly, not exactly, aligned
    normals = face_normals(mesh.vertices, mesh.faces)[face] @ R.T
    return {"data": unit_sphere(pts @ R.T), "normal": normals.astype(np.float32),
            "faceId": face.astype(np.int32)}


def _part_cloud(seed: int, cat_index: int, split: str, index: int) -> dict[str, np.ndarray]:
    family = SHAPENET_PART_CATEGORIES[cat_index][2]
    rng = object_rng(seed, "shapenet_part", family, split, index)
    mesh = ss.normalize_bbox_diagonal(ss.build_object(family, rng))
    pts, face = _visible_samples(mesh, NUM_POINTS, rng)
    pid = PART_OFFSETS[cat_index] + mesh.face_part[face]
    return {"data": unit_sphere(pts), "pid": pid.astype(np.uint8)}


def _background(rng: np.random.Generator, obj_lo: np.ndarray, obj_hi: np.ndarray,
                sensor_az: float) -> list[ss.Prim]:
    """Floor, maybe a wall behind the object, and clutter beside or behind it (seen from ``sensor_az``)."""
    prims = [ss.box((0, -0.02, 0), (4.0, 0.04, 4.0))]
    radius = float(np.linalg.norm((obj_hi - obj_lo)[[0, 2]]) / 2)
    if rng.random() < 0.5:
        a = sensor_az + np.pi + rng.uniform(-0.8, 0.8)
        d = radius * rng.uniform(0.75, 1.1) + rng.uniform(0.0, 0.12)
        prims.append(ss.box((d * np.cos(a), 0.75, d * np.sin(a)), (0.04, 1.5, 4.0), R=rot("y", -a)))
    for _ in range(int(rng.choice([0, 1, 2, 3], p=[0.25, 0.35, 0.25, 0.15]))):
        a = sensor_az + rng.uniform(0.7, 2 * np.pi - 0.7)
        s = rng.uniform(0.08, 0.35, size=3)
        d = radius + s[[0, 2]].max() * rng.uniform(0.1, 0.6)
        c = (d * np.cos(a), s[1] / 2, d * np.sin(a))
        if rng.random() < 0.6:
            prims.append(ss.box(c, s, R=rot("y", rng.uniform(0, np.pi))))
        else:
            prims.append(ss.cyl((c[0], 0, c[2]), (c[0], s[1], c[2]), s[0] / 2, n=14))
    return prims


# PB_T50_RS (ScanObjectNN's hardest variant, the *_augmentedrot_scale75.h5 files): each object 5
# times, each copy cropped with its bounding box translated by up to 50 % of the box size along
# each axis, rotated about the up axis and scaled.
PB_COPIES = 5
PB_SHIFT = 0.5  # box translation, fraction of the box size per axis: U(-0.5, 0.5)
# Per-axis scale factors U(0.75, 1.25) ("scale75": we read it as +-25 %, an assumption; the
# exact range of the real files is not stated in them).
PB_SCALE = (0.75, 1.25)
PB_T50_RS_FILES = {split: names[0] for split, names in SCANOBJECTNN_VARIANTS["pb_t50_rs"][1].items()}


def _pb_t50_rs_copies(rng: np.random.Generator, scene_q: np.ndarray, scene_obj: np.ndarray,
                      box_lo: np.ndarray, box_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The PB_T50_RS copies of one scanned object.

    Args:
        scene_q: (M, 3) every scanned point of the scene in the object frame (y up, object on
            the floor), missing patch already removed; scene_obj: (M,) bool, point is on the object.
        box_lo, box_hi: (3,) the object's crop box in that frame (OBJ_BG's box).

    Each copy: the box shifted by U(-PB_SHIFT, PB_SHIFT) x its size per axis (redrawn, up to 8
    times, while the shifted box holds fewer than 64 object points; then unshifted), the points
    inside it (object and background) sampled to NUM_POINTS, centred on the shifted box's centre
    and scaled into the unit sphere (so the object sits off-centre, as in PB_T50), then rotated
    about y by U(0, 360) degrees and scaled per axis by U(PB_SCALE).

    Returns: data float32 (PB_COPIES, NUM_POINTS, 3), mask int64 (PB_COPIES, NUM_POINTS) with
    1 = object, -1 = background.
    """
    size = box_hi - box_lo
    datas, masks = [], []
    for _ in range(PB_COPIES):
        for _ in range(8):
            shift = rng.uniform(-PB_SHIFT, PB_SHIFT, size=3) * size
            inside = np.all((scene_q >= box_lo + shift) & (scene_q <= box_hi + shift), axis=1)
            if scene_obj[inside].sum() >= 64:
                break
        else:
            shift = np.zeros(3)
            inside = np.all((scene_q >= box_lo) & (scene_q <= box_hi), axis=1)
        pts, obj = scene_q[inside], scene_obj[inside]
        sel = rng.choice(len(pts), NUM_POINTS, replace=len(pts) < NUM_POINTS)
        p = pts[sel] - (box_lo + box_hi + 2 * shift) / 2
        p = p / max(float(np.linalg.norm(p, axis=1).max()), 1e-9)
        p = p @ rot("y", rng.uniform(0, 2 * np.pi)).T * rng.uniform(*PB_SCALE, size=3)
        datas.append(p.astype(np.float32))
        masks.append(np.where(obj[sel], 1, -1).astype(np.int64))
    return np.stack(datas), np.stack(masks)


def _scan_cloud(seed: int, family: str, split: str, index: int) -> dict[str, np.ndarray]:
    """One simulated ScanObjectNN object: OBJ_BG cloud + mask, the OBJ_ONLY cloud, and the
    PB_T50_RS copies ("pb_data" (PB_COPIES, 2048, 3), "pb_mask" (PB_COPIES, 2048)), drawn from a
    generator of their own so that the other arrays do not depend on them."""
    rng = object_rng(seed, "scanobjectnn", family, split, index)
    mesh = ss.normalize_bbox_diagonal(ss.build_object(family, rng))
    lo_o, hi_o = mesh.vertices.min(0), mesh.vertices.max(0)
    R = rot("y", rng.uniform(0, 2 * np.pi))
    t = np.array([0.0, -lo_o[1], 0.0])  # stand on the floor (y = 0)
    v = (mesh.vertices + t) @ R.T
    az = rng.uniform(0, 2 * np.pi)  # where the (first) sensor position is
    bg = _background(rng, v.min(0), v.max(0), az)
    verts = [v] + [p[0] for p in bg]
    faces, off = [mesh.faces], len(v)
    for p in bg:
        faces.append(p[1] + off)
        off += len(p[0])
    is_obj = np.concatenate([np.ones(len(mesh.faces), bool)] + [np.zeros(len(p[1]), bool) for p in bg])
    caster = rd.RayCaster(np.concatenate(verts), np.concatenate(faces))
    center = np.array([0.0, (hi_o[1] - lo_o[1]) / 2, 0.0])
    margin = np.abs(hi_o - lo_o) * rng.uniform(0.03, 0.15, size=3) + 0.01
    margin_lo = margin.copy()
    margin_lo[1] = rng.uniform(0.005, 0.03)  # a thin slice of floor falls inside the box
    # A short hand-held sweep: 1-3 sensor positions within ~120 deg of azimuth, all on one side.
    n_views = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
    poses = []
    for _ in range(n_views):
        el, dist = np.radians(rng.uniform(10, 50)), rng.uniform(1.0, 1.8)
        sensor = center + dist * np.array([np.cos(el) * np.cos(az), np.sin(el), np.cos(el) * np.sin(az)])
        poses.append((sensor, center + rng.normal(0, 0.03, size=3), np.degrees(2 * np.arctan(0.58 / dist))))
        az += np.radians(rng.uniform(20, 60))
    res = int(rng.integers(64, 96))
    for _ in range(4):
        hits = [rd.scan(caster, s_, tg, fv, res, rng) for s_, tg, fv in poses]
        pts = np.concatenate([h[0] for h in hits])
        face = np.concatenate([h[1] for h in hits])
        dirs = np.concatenate([h[2] for h in hits])
        pts = pts + dirs * rng.normal(0, rng.uniform(0.002, 0.008), size=(len(pts), 1))  # depth noise
        pts = pts + rng.normal(0, 0.0015, size=pts.shape)
        q = (pts @ R) - t  # back to the object frame: (p R^T)^-1 = p R
        scene_obj = is_obj[face]  # (M,) the whole scan, for PB_T50_RS's shifted boxes
        inside = np.all((q >= lo_o - margin_lo) & (q <= hi_o + margin), axis=1)
        pts, obj = pts[inside], scene_obj[inside]
        if obj.sum() >= NUM_POINTS:
            break
        res = int(res * 1.5)  # thin or distant object: scan again at a higher resolution
    if not obj.any():
        raise RuntimeError(f"synthetic ScanObjectNN: no object point in the scan of {family} {split} {index}")
    if rng.random() < 0.3:  # a missing patch (reflective or dark surface)
        c = pts[obj][rng.integers(obj.sum())]
        radius = rng.uniform(0.05, 0.15)
        keep = np.linalg.norm(pts - c, axis=1) > radius
        if obj[keep].sum() >= 256:
            pts, obj = pts[keep], obj[keep]
            scene_keep = np.linalg.norm(((q + t) @ R.T) - c, axis=1) > radius
            q, scene_obj = q[scene_keep], scene_obj[scene_keep]
    pb_data, pb_mask = _pb_t50_rs_copies(object_rng(seed, "scanobjectnn/pb_t50_rs", family, split, index),
                                         q, scene_obj, lo_o - margin_lo, hi_o + margin)
    sel = rng.choice(len(pts), NUM_POINTS, replace=len(pts) < NUM_POINTS)
    obj_idx = np.flatnonzero(obj)
    sel_obj = obj_idx[rng.choice(len(obj_idx), NUM_POINTS, replace=len(obj_idx) < NUM_POINTS)]
    mask = np.where(obj[sel], 1, -1).astype(np.int64)
    return {"data": unit_sphere(pts[sel]), "mask": mask,
            "data_nobg": unit_sphere(pts[sel_obj]),
            "pb_data": pb_data, "pb_mask": pb_mask}


def _cloud_chunk(task: tuple) -> list[dict[str, np.ndarray]]:
    """A batch of clouds for one h5 dataset: task = (dataset, seed, [(class key, split, index), ...])."""
    dataset, seed, items = task
    fn = {"modelnet40": _modelnet_cloud, "scanobjectnn": _scan_cloud, "shapenet_part": _part_cloud}[dataset]
    return [fn(seed, cls, split, index) for cls, split, index in items]


# ----------------------------------------------------------------------------------------------
# Dataset writers
# ----------------------------------------------------------------------------------------------


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _order(seed: int, dataset: str, split: str, n: int) -> np.ndarray:
    """The shuffled order of a split's objects in its h5 files (the published files are shuffled)."""
    return np.random.default_rng([int(seed), text_key(dataset), text_key(split), text_key("order")]).permutation(n)


def _gen_shapenet_render(tmp: Path, cfg: Preset, seed: int, runner: Runner) -> dict:
    classes = [(f, s) for f, s in SHAPENET_RENDER_CLASSES if f in cfg.render_classes]
    for _, synset in classes:
        (tmp / "ShapeNet" / synset).mkdir(parents=True, exist_ok=True)
        (tmp / "ShapeNetRendering" / synset).mkdir(parents=True, exist_ok=True)
    tasks = [(str(tmp), seed, f, s, i, cfg.views) for f, s in classes for i in range(cfg.render_objects)]
    runner.map(_shapenet_render_object, tasks, "ShapeNetRender")
    return {"counts": {"objects": len(tasks), "views_per_object": cfg.views, "images": len(tasks) * cfg.views},
            "classes": [f for f, _ in classes], "synsets": {s: f for f, s in classes}}


def _gen_h5_splits(dataset: str, classes: list[tuple[int, str]], splits: dict[str, int], seed: int,
                   runner: Runner) -> dict[str, tuple[list[dict], np.ndarray]]:
    """Generates every split: returns split -> (per-object arrays in file order, labels in file order)."""
    out = {}
    for split, per_class in splits.items():
        items = [(key, split, i) for _, key in classes for i in range(per_class)]
        labels = np.array([lab for lab, _ in classes for _ in range(per_class)], dtype=np.int64)
        chunks = _chunks(items, 8)
        res = runner.map(_cloud_chunk, [(dataset, seed, c) for c in chunks], f"{dataset}/{split}",
                         weights=[len(c) for c in chunks])
        flat = [r for chunk in res for r in chunk]
        order = _order(seed, dataset, split, len(flat))
        out[split] = ([flat[i] for i in order], labels[order])
    return out


def _gen_modelnet40(tmp: Path, cfg: Preset, seed: int, runner: Runner) -> dict:
    lookup = dict(MODELNET_SHARED + MODELNET_UNSEEN)
    names = sorted(cfg.modelnet_classes)  # ModelNet40's shape_names.txt is alphabetical
    folder = tmp / "modelnet40_ply_hdf5_2048"
    folder.mkdir(parents=True)
    data = _gen_h5_splits("modelnet40", [(i, lookup[n]) for i, n in enumerate(names)],
                          {"train": cfg.modelnet[0], "test": cfg.modelnet[1]}, seed, runner)
    counts = {}
    for split, (objs, labels) in data.items():
        arrays = {"data": np.stack([o["data"] for o in objs]),  # (N, 2048, 3)
                  "faceId": np.stack([o["faceId"] for o in objs]),  # (N, 2048)
                  "label": labels.astype(np.uint8)[:, None],  # (N, 1)
                  "normal": np.stack([o["normal"] for o in objs])}  # (N, 2048, 3)
        files = write_split_files(folder, f"ply_data_{split}", arrays)
        (folder / f"{split}_files.txt").write_text(
            "".join(f"data/modelnet40_ply_hdf5_2048/{f}\n" for f in files))
        counts[split] = len(objs)
    (folder / "shape_names.txt").write_text("".join(f"{n}\n" for n in names))
    return {"counts": counts, "classes": names,
            "unseen_in_pretraining": [n for n in names if n in dict(MODELNET_UNSEEN)]}


def _gen_scanobjectnn(tmp: Path, cfg: Preset, seed: int, runner: Runner) -> dict:
    classes = list(enumerate(SCANOBJECTNN_CLASSES[:cfg.scan_classes]))
    data = _gen_h5_splits("scanobjectnn", classes, {"train": cfg.scan[0], "test": cfg.scan[1]}, seed, runner)
    bg, nobg = tmp / "ScanObjectNN" / "main_split", tmp / "ScanObjectNN" / "main_split_nobg"
    bg.mkdir(parents=True)
    nobg.mkdir(parents=True)
    counts, pb_counts = {}, {}
    for split, (objs, labels) in data.items():
        write_h5(bg / f"{split}.h5", {"data": np.stack([o["data"] for o in objs]),  # (N, 2048, 3)
                                      "label": labels.astype(np.int64),  # (N,)
                                      "mask": np.stack([o["mask"] for o in objs])})  # (N, 2048)
        write_h5(nobg / f"{split}.h5", {"data": np.stack([o["data_nobg"] for o in objs]),
                                        "label": labels.astype(np.int64),
                                        "mask": np.ones((len(objs), NUM_POINTS), dtype=np.int64)})
        # PB_T50_RS: each object's PB_COPIES copies next to each other, objects in the split's order.
        write_h5(bg / PB_T50_RS_FILES[split],
                 {"data": np.concatenate([o["pb_data"] for o in objs]),  # (PB_COPIES * N, 2048, 3)
                  "label": np.repeat(labels.astype(np.int64), PB_COPIES),  # (PB_COPIES * N,)
                  "mask": np.concatenate([o["pb_mask"] for o in objs])})  # (PB_COPIES * N, 2048)
        counts[split] = len(objs)
        pb_counts[split] = PB_COPIES * len(objs)
    return {"counts": counts, "classes": [c for _, c in classes],
            "variants": {"obj_bg": "main_split/{train,test}.h5", "obj_only": "main_split_nobg/{train,test}.h5",
                         "pb_t50_rs": ", ".join(f"main_split/{n}" for n in PB_T50_RS_FILES.values())},
            "variant_counts": {"obj_bg": counts, "obj_only": counts, "pb_t50_rs": pb_counts}}


def _gen_shapenet_part(tmp: Path, cfg: Preset, seed: int, runner: Runner) -> dict:
    folder = tmp / "shapenet_part_seg_hdf5_data"
    folder.mkdir(parents=True)
    classes = [(i, i) for i in range(len(SHAPENET_PART_CATEGORIES))]
    data = _gen_h5_splits("shapenet_part", classes, dict(zip(("train", "val", "test"), cfg.part)), seed, runner)
    counts = {}
    for split, (objs, labels) in data.items():
        arrays = {"data": np.stack([o["data"] for o in objs]),  # (N, 2048, 3)
                  "label": labels.astype(np.uint8)[:, None],  # (N, 1)
                  "pid": np.stack([o["pid"] for o in objs])}  # (N, 2048)
        files = write_split_files(folder, f"ply_data_{split}", arrays)
        (folder / f"{split}_hdf5_file_list.txt").write_text("".join(f"{f}\n" for f in files))
        counts[split] = len(objs)
    (folder / "all_object_categories.txt").write_text(
        "".join(f"{name}\t{synset}\n" for name, synset, _ in SHAPENET_PART_CATEGORIES))
    overall = {}
    for c, (_, synset, _) in enumerate(SHAPENET_PART_CATEGORIES):
        for p in range(PARTS_PER_CATEGORY[c]):
            overall[PART_OFFSETS[c] + p] = [synset, p + 1]
    (folder / "overallid_to_catid_partid.json").write_text(json.dumps([overall[i] for i in range(50)]))
    (folder / "catid_partid_to_overallid.json").write_text(
        json.dumps({f"{s}_{p}": i for i, (s, p) in overall.items()}, sort_keys=True))
    parts = {name.lower(): list(ss.FAMILIES[fam][1]) for name, _, fam in SHAPENET_PART_CATEGORIES}
    return {"counts": counts, "classes": [n for n, _, _ in SHAPENET_PART_CATEGORIES], "part_names": parts}


_GENERATORS = {"shapenet_render": _gen_shapenet_render, "modelnet40": _gen_modelnet40,
               "scanobjectnn": _gen_scanobjectnn, "shapenet_part": _gen_shapenet_part}


# ----------------------------------------------------------------------------------------------
# Orchestration: temp dir, atomic moves, marker
# ----------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict | None:
    return read_json(path, hint="delete it or rerun with --force")


def _clean_stale(root: Path) -> None:
    """Removes temp dirs of killed runs, and folders a killed run was swapping in (listed in the note)."""
    for d in root.glob(TMP_PREFIX + "*"):
        pid = d.name[len(TMP_PREFIX):]
        if not (pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid))):
            shutil.rmtree(d, ignore_errors=True)
    note = _read_json(root / SWAP_NOTE)
    if note is not None:
        for name in note.get("folders", []):
            shutil.rmtree(root / name, ignore_errors=True)
        (root / SWAP_NOTE).unlink()


def _parse_only(only: str | Iterable[str] | None) -> list[str]:
    if only is None:
        return list(DATASETS)
    names = [s.strip() for s in (only.split(",") if isinstance(only, str) else only) if s.strip()]
    bad = [n for n in names if n not in DATASETS]
    if bad or not names:
        raise ValueError(f"--only: unknown dataset(s) {bad or names}; choose from {', '.join(DATASETS)}")
    return [n for n in DATASETS if n in names]


def _plan(root: Path, preset: str, seed: int, names: list[str], force: bool
          ) -> tuple[dict | None, bool, dict[str, dict], list[str]]:
    """What a run under ``root`` keeps and writes: (its marker or None, whether the marker is of this
    preset, seed and version, {dataset: marker entry} kept as they are, datasets to generate).
    Raises FileExistsError when the marker describes other synthetic data and ``force`` is off."""
    marker = _read_json(root / MARKER)
    same = marker is not None and marker.get("preset") == preset and marker.get("seed") == seed \
        and marker.get("version") == VERSION
    if marker is not None and not same and not force:
        raise FileExistsError(
            f"{root / MARKER} describes other synthetic data (preset={marker.get('preset')!r}, "
            f"seed={marker.get('seed')!r}, version={marker.get('version')!r}); pass force=True / --force "
            f"to replace it, or choose another --root")
    done = dict(marker.get("datasets", {})) if same else {}
    done = {n: v for n, v in done.items()
            if all((root / f).is_dir() for f in FOLDERS[n]) and MARKER_NEEDS.get(n, "counts") in v}
    todo = list(names) if force else [n for n in names if n not in done]
    done = {n: v for n, v in done.items() if n not in todo}  # kept as they are
    return marker, same, done, todo


def _ours_or_refuse(root: Path, marker: dict | None, todo: list[str], force: bool) -> set[str]:
    """The folders under ``root`` that the marker lists as synthetic. Without ``force``, a folder that
    ``todo`` would replace and no marker lists raises FileExistsError."""
    ours = set()
    if marker is not None:
        ours = {f for v in marker.get("datasets", {}).values() for f in v.get("folders", [])}
    if not force:
        foreign = [f for n in todo for f in FOLDERS[n] if (root / f).exists() and f not in ours]
        if foreign:
            raise FileExistsError(
                f"{root} already has {', '.join(foreign)} that no {MARKER} marks as synthetic (real data, or "
                f"a run killed while moving folders into place); pass force=True / --force to replace it, "
                f"or choose another --root")
    return ours


def _move_into_place(root: Path, tmp: Path, moving: list[str], stale: list[str]) -> None:
    """Removes the marker and the ``stale`` folders, then moves the folders ``moving`` from ``tmp`` into
    ``root`` (an existing one goes into ``tmp``). The swap note lists them all first, so that a killed
    run's half-moved folders are removed by the next run (:func:`_clean_stale`)."""
    atomic_write_text(root / SWAP_NOTE, json.dumps({"folders": sorted(set(moving + stale))}))
    (root / MARKER).unlink(missing_ok=True)
    for f in stale:
        shutil.rmtree(root / f, ignore_errors=True)
    for f in moving:
        if (root / f).exists():
            os.replace(root / f, tmp / f"old-{f}")
        os.replace(tmp / f, root / f)


def _write_sheet_and_marker(root: Path, tmp: Path, marker: dict) -> float:
    """Draws ``root``'s contact sheet, then writes the marker and removes the swap note; returns the
    seconds the contact sheet took."""
    t0 = time.perf_counter()
    make_contact_sheet(root, tmp / "contact_sheet.png")
    os.replace(tmp / "contact_sheet.png", root / "contact_sheet.png")
    seconds = time.perf_counter() - t0
    atomic_write_text(root / MARKER, json.dumps(marker, indent=1, sort_keys=True) + "\n")
    (root / SWAP_NOTE).unlink()
    return seconds


def generate(root: str | os.PathLike, preset: str = "tiny", seed: int = 0, progress: bool = True,
             only: str | Iterable[str] | None = None, workers: int = 1, force: bool = False) -> dict:
    """Writes the synthetic datasets under ``root`` and returns a summary.

    Args:
        root: output folder (created if missing); dataset folders go directly under it.
        preset: "tiny" (unit tests, seconds), "small" (quickstart, about a minute on 2 cores) or
            "full" (thousands of objects; use workers).
        seed: base seed; the same seed gives byte-identical files.
        progress: show progress on stderr (util.progress: a bar on a terminal, plain lines in a log).
        only: subset of "shapenet_render", "modelnet40", "scanobjectnn", "shapenet_part".
        workers: processes (results do not depend on it).
        force: replace existing synthetic data of another preset/seed, or folders not marked as ours.

    Returns: {"root", "preset", "seed", "version", "reused": bool, "datasets": {name: {"counts", ...}},
        "seconds": {name: s, "total": s}, "contact_sheet": path}.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    names = _parse_only(only)
    cfg = PRESETS[preset]
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _clean_stale(root)
    t_start = time.perf_counter()
    marker, same, done, todo = _plan(root, preset, int(seed), names, force)
    if not todo:
        if progress:
            print(f"[synthetic] reusing {root} (preset={preset}, seed={seed})", file=sys.stderr)
        return {"root": str(root), "preset": preset, "seed": int(seed), "version": VERSION, "reused": True,
                "datasets": {n: done[n] for n in names}, "seconds": {"total": time.perf_counter() - t_start},
                "contact_sheet": str(root / "contact_sheet.png")}
    ours = _ours_or_refuse(root, marker, todo, force)
    tmp = root / f"{TMP_PREFIX}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    seconds: dict[str, float] = {}
    info: dict[str, dict] = {}
    runner = Runner(workers, progress)
    try:
        for name in todo:
            t0 = time.perf_counter()
            info[name] = _GENERATORS[name](tmp, cfg, int(seed), runner)
            info[name]["folders"] = list(FOLDERS[name])
            seconds[name] = time.perf_counter() - t0
        if force and marker is not None and not same:
            done = {}
            stale = sorted(ours)
        else:
            stale = []
        _move_into_place(root, tmp, [f for n in todo for f in FOLDERS[n]], stale)
        new_marker = {"generator": "datasets.synthetic", "version": VERSION, "preset": preset, "seed": int(seed),
                      "datasets": {**done, **info}}
        seconds["contact_sheet"] = _write_sheet_and_marker(root, tmp, new_marker)
    finally:
        runner.close()
        shutil.rmtree(tmp, ignore_errors=True)
    seconds["total"] = time.perf_counter() - t_start
    return {"root": str(root), "preset": preset, "seed": int(seed), "version": VERSION, "reused": False,
            "datasets": {n: new_marker["datasets"][n] for n in names}, "seconds": seconds,
            "contact_sheet": str(root / "contact_sheet.png")}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m datasets.synthetic", description="Write synthetic ShapeNetRender / ModelNet40 / ScanObjectNN / "
                                                 "ShapeNetPart data in the published file formats.")
    parser.add_argument("--root", default="data/synthetic", help="output folder (default: data/synthetic)")
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS),
                        help="tiny: unit tests; small: quickstart (default); full: GPU-scale experiments")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of: {','.join(DATASETS)}")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="worker processes; the output does not depend on it (default: min(4, CPUs))")
    parser.add_argument("--force", action="store_true", help="replace existing data in --root")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    summary = generate(args.root, preset=args.preset, seed=args.seed, progress=not args.quiet, only=args.only,
                       workers=args.workers, force=args.force)
    for name, d in summary["datasets"].items():
        print(f"{name}: {json.dumps(d['counts'])} classes={len(d['classes'])}")
    print("seconds: " + ", ".join(f"{k}={v:.1f}" for k, v in summary["seconds"].items()))
    print(f"contact sheet: {summary['contact_sheet']}" + (" (reused)" if summary["reused"] else ""))
    return summary
