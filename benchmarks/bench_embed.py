"""Throughput of ``embed.py``: clouds/s of a DGCNN encoder on CPU, end to end and forward only.

Usage (from the repository root):
    .venv/bin/python -m benchmarks.bench_embed                        # 2 threads, batch 32, 3 rounds
    .venv/bin/python -m benchmarks.bench_embed --threads 1 --rounds 5 --copies 4
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.bench_embed   # on a machine other jobs share

What embed.py runs, through the library functions it calls: the inputs are found, read and
preprocessed with ``datasets.making.meshes.read_encoder_clouds``; the encoder is loaded with
``util.weights.load_point_encoder`` from a randomly initialised ``DGCNN(k=20, emb_dims=1024)`` saved to
a temporary .pth; the features come from ``evaluation.features.embed_clouds`` in batches of
``--batch_size`` clouds. Random weights cost the same time as trained ones.

Inputs:
- ``h5``: a published-layout HDF5 file (default: the synthetic ``small`` ModelNet40 test file,
  ``data/synthetic_small/modelnet40_ply_hdf5_2048/ply_data_test0.h5``, 200 clouds of 2048 points; when
  it is absent the ``small`` ModelNet40 set is generated into a temporary folder). Preprocessing: the
  first ``--num_points`` points of each stored cloud.
- ``meshes``: the real meshes of ``tests/data/meshes/`` copied ``--copies`` times (10 files x 2 = 20
  objects by default; ``benchmarks.bench_prepare_meshes.build_input``). Preprocessing: read, normalise,
  ``--num_points`` area-weighted surface samples, unit sphere.

Measured per input, ``--rounds`` times after one warm-up forward batch: ``read_s`` (finding, reading
and preprocessing every file), ``forward_s`` (batching + forward passes), and end to end = both, in
the same round; reported: medians and clouds/s from them (``clouds_per_s_forward`` is forward only).
Loading the encoder (once) is reported apart (``load_s``). Results:
``benchmarks/results/embed.json`` with ``benchmarks.run.machine_info``, the load average at the
start and the end, and ``OMP_WAIT_POLICY``; on a shared machine, read the numbers with the load.
When another process keeps a core busy, OpenMP's default spin-waiting made the 2-thread forward pass
about 13x slower on the 2-core machine (28 s instead of 2.2 s for 32 clouds); run with
``OMP_WAIT_POLICY=PASSIVE`` in the environment there (it must be set before the process starts).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from benchmarks.bench_prepare_meshes import build_input
from benchmarks.run import REPO, RESULTS_DIR, print_table, run_and_save
from datasets.making.meshes import find_inputs, read_encoder_clouds
from models import build_point_encoder
from util.weights import LoadedEncoder, load_point_encoder
from evaluation.features import embed_clouds

DEFAULT_H5 = REPO / "data" / "synthetic_small" / "modelnet40_ply_hdf5_2048" / "ply_data_test0.h5"
MODEL = {"model": "dgcnn", "k": 20, "emb_dims": 1024}


def read_clouds(inputs: list[Path], num_points: int) -> list[tuple[str, np.ndarray, str]]:
    """Every cloud of the files under ``inputs``, read and preprocessed as embed.py does (seed 0)."""
    clouds, skipped = read_encoder_clouds(inputs, num_points)
    if skipped:
        raise RuntimeError(f"benchmark inputs were skipped: {skipped}")
    return clouds


def forward(model: torch.nn.Module, clouds: list[tuple[str, np.ndarray, str]], batch_size: int) -> np.ndarray:
    """(M, D) float32 features of ``clouds``, in batches of ``batch_size`` on the CPU, as embed.py computes them."""
    return embed_clouds(model, clouds, "cpu", batch_size)


def time_input(name: str, inputs: list[Path], encoder: LoadedEncoder, args: argparse.Namespace) -> dict:
    """Medians over ``args.rounds`` of reading + preprocessing and of the forward passes."""
    model = encoder.model
    files = len(find_inputs(inputs))
    clouds = read_clouds(inputs, args.num_points)
    forward(model, clouds[:args.batch_size], args.batch_size)  # warm-up
    reads, forwards = [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        clouds = read_clouds(inputs, args.num_points)
        t1 = time.perf_counter()
        feats = forward(model, clouds, args.batch_size)
        t2 = time.perf_counter()
        reads.append(t1 - t0)
        forwards.append(t2 - t1)
    if feats.shape != (len(clouds), encoder.feat_dim) or not np.isfinite(feats).all():
        raise RuntimeError(f"{name}: unexpected features {tuple(feats.shape)} for {len(clouds)} clouds")
    n = len(clouds)
    read_s, forward_s = statistics.median(reads), statistics.median(forwards)
    total = statistics.median(r + f for r, f in zip(reads, forwards))
    return {"input": name, "files": files, "clouds": n, "read_s": read_s,
            "forward_s": forward_s, "end_to_end_s": total, "clouds_per_s_end_to_end": n / total,
            "clouds_per_s_forward": n / forward_s, "ms_per_cloud_read": 1000 * read_s / n,
            "read_s_all": reads, "forward_s_all": forwards}


def bench(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench_embed_") as work:
        return _bench(args, Path(work))


def _bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Both inputs, with the encoder's weights and the mesh copies in ``work``."""
    torch.manual_seed(0)
    weights = work / "dgcnn_random.pth"
    torch.save(build_point_encoder(MODEL["model"], k=MODEL["k"], emb_dims=MODEL["emb_dims"]).state_dict(), weights)
    t0 = time.perf_counter()
    encoder = load_point_encoder(weights, **MODEL, device="cpu", verbose=False)
    load_s = time.perf_counter() - t0
    h5 = Path(args.h5) if args.h5 else DEFAULT_H5
    if not h5.is_file():
        if args.h5:
            raise SystemExit(f"bench_embed: --h5 {h5}: no such file")
        from datasets.synthetic.generator import generate

        print(f"{h5} is absent: generating the small synthetic ModelNet40 set into {work}", flush=True)
        generate(work / "synthetic", preset="small", seed=0, progress=False, only="modelnet40")
        h5 = work / "synthetic" / "modelnet40_ply_hdf5_2048" / "ply_data_test0.h5"
    meshes = build_input(work / "meshes", args.copies)
    rows = [time_input("h5", [h5], encoder, args), time_input("meshes", [work / "meshes"], encoder, args)]
    print_table(f"embed: DGCNN(k={MODEL['k']}, emb_dims={MODEL['emb_dims']}), {args.num_points} points, batch "
                f"{args.batch_size}, {torch.get_num_threads()} threads, median of {args.rounds} round(s); "
                f"encoder load {load_s:.2f} s",
                [("input", "{}"), ("files", "{}"), ("clouds", "{}"), ("read_s", "{:.2f}"), ("forward_s", "{:.2f}"),
                 ("end_to_end_s", "{:.2f}"), ("clouds_per_s_end_to_end", "{:.1f}"),
                 ("clouds_per_s_forward", "{:.1f}"), ("ms_per_cloud_read", "{:.1f}")], rows)
    return {"settings": {**MODEL, "num_points": args.num_points, "batch_size": args.batch_size,
                         "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                         "rounds": args.rounds, "copies": args.copies,
                         "h5": str(h5), "mesh_files": len(meshes), "weights": "random init (seed 0)"},
            "load_s": load_s, "rows": rows}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    p.add_argument("--batch_size", type=int, default=32, help="clouds per forward pass (default: 32, embed.py's)")
    p.add_argument("--num_points", type=int, default=1024, help="points per cloud (default: 1024, embed.py's)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per input (default: 3)")
    p.add_argument("--copies", type=int, default=2, help="copies of each of the 10 meshes (default: 2 -> 20)")
    p.add_argument("--h5", default=None, help=f"published-layout h5 file (default: {DEFAULT_H5.relative_to(REPO)})")
    p.add_argument("--output", default=None, help="JSON path (default: benchmarks/results/embed.json)")
    p.add_argument("--no-save", action="store_true", help="print only")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if min(args.threads, args.batch_size, args.num_points, args.rounds, args.copies) < 1:
        raise SystemExit("bench_embed: --threads, --batch_size, --num_points, --rounds and --copies must be >= 1")
    torch.set_num_threads(args.threads)
    out = None if args.no_save else Path(args.output) if args.output else RESULTS_DIR / "embed.json"
    return run_and_save(lambda: bench(args), out)


if __name__ == "__main__":
    main()
