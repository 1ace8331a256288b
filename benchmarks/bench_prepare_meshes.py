"""Throughput of ``python -m datasets.prepare_meshes`` on real meshes: objects/s at the published settings.

Usage (from the repository root):
    .venv/bin/python -m benchmarks.bench_prepare_meshes                   # 24 views, 2048 points, workers 1,2
    .venv/bin/python -m benchmarks.bench_prepare_meshes --workers 1,2,4 --rounds 3 --copies 2

Input: the real meshes of ``tests/data/meshes/`` (sources and licences in its SOURCES.md: OFF, OBJ, PLY,
STL, GLB, from 12 to 1280 triangles), each copied ``--copies`` times under its own name into 2 classes
(10 files x 10 copies = 100 objects by default). Each configuration prepares the whole input into a fresh output
folder, through ``datasets.prepare_meshes.prepare.prepare`` (what the CLI runs), ``--rounds`` times; reported: the
median wall time and objects/s (process-pool start-up included, since a user pays it), and the best round.
A per-object breakdown (one process, median over the objects) splits the time into reading + normalising,
surface sampling, building the Embree scene, ray casting + shading the views, and PNG encoding. A rerun on a
finished output (everything already done: hashing the sources and checking completion marks, then rebuilding
the classification set) is timed too.

Results: ``benchmarks/results/prepare_meshes.json`` (with ``benchmarks.run.machine_info``). On a shared
machine, compare medians and look at the recorded load average.
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from benchmarks.run import REPO, RESULTS_DIR, print_table, run_and_save
from datasets.making import render as rd
from datasets.making.common import face_normals
from datasets.making.meshes import load_mesh, normalize_mesh, sample_surface
from datasets.prepare_meshes.prepare import ALBEDO, IMAGE_SIZE, object_rng, prepare

MESHES = REPO / "tests" / "data" / "meshes"
MESH_FILES = ("teapot.stl", "multibody.stl", "comments.off", "whitespace.off", "rabbit.obj",
              "two_objects.obj", "fuze.ply", "sphere.ply", "nested.glb", "BoxInterleaved.glb")


def build_input(folder: Path, copies: int) -> list[Path]:
    """``copies`` copies of every real mesh, alternating between two class folders."""
    files = []
    for c in range(copies):
        for i, name in enumerate(MESH_FILES):
            cls = folder / ("a" if i % 2 == 0 else "b")
            cls.mkdir(parents=True, exist_ok=True)
            dst = cls / f"{Path(name).stem}_{c}{Path(name).suffix}"
            shutil.copy(MESHES / name, dst)
            files.append(dst)
    return files


def breakdown(files: list[Path], views: int, num_points: int) -> dict[str, float]:
    """Median milliseconds per object of each stage of one object's preparation (this process)."""
    stages: dict[str, list[float]] = {k: [] for k in ("read_normalise", "sample", "embree_scene",
                                                      "render_views", "png_encode", "total")}
    for f in files:
        t0 = time.perf_counter()
        mesh = normalize_mesh(load_mesh(f))
        t1 = time.perf_counter()
        rng = object_rng(0, "bench", f.stem)
        sample_surface(mesh, num_points, rng)
        t2 = time.perf_counter()
        caster = rd.RayCaster(mesh.vertices, mesh.faces)
        normals = face_normals(np.asarray(mesh.vertices), np.asarray(mesh.faces))
        albedo = np.broadcast_to(np.asarray(ALBEDO), (len(mesh.faces), 3))
        t3 = time.perf_counter()
        images = [rd.render_view(caster, np.asarray(mesh.vertices), normals, albedo, rng.uniform(0, 360),
                                 rng.uniform(25, 30), rng.uniform(0.7, 0.9) * rd.MAX_CAMERA_DISTANCE,
                                 rd.BLENDER_FOV_DEG, IMAGE_SIZE) for _ in range(views)]
        t4 = time.perf_counter()
        for img in images:
            Image.fromarray(img, "RGBA").save(io.BytesIO(), format="PNG", compress_level=3)
        t5 = time.perf_counter()
        for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0)):
            stages[key].append(1000 * dt)
    return {k: statistics.median(v) for k, v in stages.items()}


def bench(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench_prepare_meshes_"))
    try:
        files = build_input(work / "input", args.copies)
        n = len(files)
        rows = []
        for workers in args.workers:
            times = []
            for r in range(args.rounds):
                out = work / f"out_w{workers}_r{r}"
                t0 = time.perf_counter()
                report = prepare(work / "input", out, num_points=args.num_points, views=args.views,
                                 workers=workers, progress=False)
                times.append(time.perf_counter() - t0)
                if not report["ok"] or report["run"]["prepared"] != n:
                    raise RuntimeError(f"prepare_meshes did not prepare every object: {report['table']}")
            t0 = time.perf_counter()
            rerun = prepare(work / "input", work / f"out_w{workers}_r0", num_points=args.num_points,
                            views=args.views, workers=workers, progress=False)
            rerun_s = time.perf_counter() - t0
            assert rerun["run"]["prepared"] == 0
            med = statistics.median(times)
            rows.append({"workers": workers, "objects": n, "seconds_median": med, "seconds_all": times,
                         "objects_per_s": n / med, "objects_per_s_best": n / min(times),
                         "ms_per_object": 1000 * med / n, "rerun_all_done_s": rerun_s})
        parts = breakdown(files[:len(MESH_FILES)], args.views, args.num_points)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(f"prepare_meshes: {n} real meshes, {args.views} views of {IMAGE_SIZE} px, {args.num_points} "
                f"points, median of {args.rounds} round(s)",
                [("workers", "{}"), ("objects", "{}"), ("seconds_median", "{:.2f}"), ("objects_per_s", "{:.1f}"),
                 ("objects_per_s_best", "{:.1f}"), ("ms_per_object", "{:.0f}"), ("rerun_all_done_s", "{:.2f}")],
                rows)
    print_table("per object, one process (median ms over the 10 distinct meshes)",
                [(k, "{:.1f}") for k in parts], [parts])
    return {"settings": {"views": args.views, "num_points": args.num_points, "image_size": IMAGE_SIZE,
                         "copies": args.copies, "rounds": args.rounds, "mesh_files": list(MESH_FILES)},
            "rows": rows, "per_object_ms_single_process": parts}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts (default: 1,2)")
    p.add_argument("--rounds", type=int, default=3, help="timed runs per worker count (default: 3)")
    p.add_argument("--copies", type=int, default=10,
                   help="copies of each of the 10 meshes (default: 10 -> 100; fewer measure mostly the pool start-up)")
    p.add_argument("--views", type=int, default=24, help="views per object (default: 24, published)")
    p.add_argument("--num_points", type=int, default=2048, help="points per object (default: 2048, published)")
    p.add_argument("--output", default=None, help="JSON path (default: benchmarks/results/prepare_meshes.json)")
    p.add_argument("--no-save", action="store_true", help="print only")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",")]
    out = None if args.no_save else Path(args.output) if args.output else RESULTS_DIR / "prepare_meshes.json"
    return run_and_save(lambda: bench(args), out)


if __name__ == "__main__":
    main()
