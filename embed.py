"""Features of any objects with a pretrained point encoder: meshes, point clouds, published HDF5 files.

    python embed.py --model_path runs/exp/checkpoints/point_encoder_best.pth --input my_meshes/ scan.xyz \
        --output features.npz
    python embed.py --model_path checkpoints/official/dgcnn_cls_best.pth --k 15 --input data/modelnet40_ply_hdf5_2048/ply_data_test0.h5 --output test0.npz

Inputs (files or folders, searched recursively): meshes (OFF, OBJ, PLY with faces, STL, GLB/GLTF:
surface-sampled), point clouds (PLY without faces, XYZ/TXT/PTS, NPY, NPZ) and HDF5 files in the published
layout. The feature is the one the linear-SVM evaluation uses (the encoder's global feature before
``inv_head``, eval mode, batched, on any device), with the same preprocessing (see
``datasets.making.meshes.encoder_clouds``: published HDF5 clouds as stored, their first ``--num_points`` points;
meshes and other clouds normalised to the unit sphere). A file that cannot be read is reported with the
reason and skipped.

Output (``np.load(out)``): ``features`` (M, D) float32; ``paths`` (M,) the file of each row (``file.h5[i]`` for
cloud i of a batch file); ``num_points`` (M,) points fed per row; ``preprocessing`` (M,) what was done; and
``settings`` (a JSON string: checkpoint and its sha1, model and arguments with their sources, num_points,
seed, up_axis, skipped files with reasons). An existing ``--output`` is replaced only with ``--overwrite``; the
flags and the output path are checked before anything is read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from datasets.making.meshes import UP_AXES, read_encoder_clouds
from evaluation.features import embed_clouds
from util.weights import load_point_encoder
from util.fileio import atomic_write, user_errors
from util.run import check_args, check_points_for_k
from util.device import resolve_device

PROG = "embed.py"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Features of meshes and point clouds with a pretrained point "
                                "encoder (the linear-SVM evaluation's feature and preprocessing).")
    p.add_argument("--model_path", required=True,
                   help="point-encoder weights (this project's point_encoder_best.pth or the published "
                        "dgcnn_cls_best.pth), or 'random'")
    p.add_argument("--input", nargs="+", required=True, help="files or folders (searched recursively)")
    p.add_argument("--output", required=True, help="the .npz to write (an existing file only with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument("--model", choices=["dgcnn", "dgcnn_seg", "pointnet"], default=None,
                   help="encoder (default: the checkpoint's sidecar, else its keys)")
    p.add_argument("--k", type=int, default=None, help="kNN size (default: the sidecar's, else 15 as published)")
    p.add_argument("--emb_dims", type=int, default=None, help="embedding size (default: the sidecar's or the weights')")
    p.add_argument("--num_points", type=int, default=1024,
                   help="points per object (surface samples of a mesh; the first N of a published HDF5 cloud, as the "
                        "linear-SVM evaluation: 1024)")
    p.add_argument("--up_axis", choices=UP_AXES, default="y",
                   help="up axis of the input meshes (ShapeNet: y; ModelNet's raw OFF files: z)")
    p.add_argument("--seed", type=int, default=0, help="seed of surface sampling and subsampling (with the file's content)")
    p.add_argument("--batch_size", type=int, default=32, help="clouds per forward pass")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p


def validate(args: argparse.Namespace) -> None:
    """Every flag checked before anything is loaded (one line naming the flag), the output path included:
    an earlier result is never replaced without ``--overwrite``."""
    check_args(PROG, args, {})
    check_points_for_k(PROG, args.num_points, args.k)
    out = Path(args.output)
    if out.is_dir():
        raise SystemExit(f"{PROG}: --output {out} is a directory; pass the path of the .npz file to write.")
    if out.exists() and not args.overwrite:
        raise SystemExit(f"{PROG}: --output {out} exists (an earlier result); pass --overwrite to replace it, or "
                         "choose another path.")
    parent = next((p for p in out.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise SystemExit(f"{PROG}: --output {out}: {parent} is a file, not a folder.")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    validate(args)
    t0 = time.perf_counter()
    device = resolve_device(args.device, prog=PROG)
    encoder = load_point_encoder(args.model_path, model=args.model, k=args.k,
                                 emb_dims=args.emb_dims, device=device, seed=args.seed)
    check_points_for_k(PROG, args.num_points, encoder.model_args.get("k"), encoder.sources.get("k"))
    clouds, skipped = read_encoder_clouds(args.input, args.num_points, args.seed, args.up_axis,
                                          not args.no_progress)
    k = encoder.model_args.get("k", 1)
    for name, points, _ in [c for c in clouds if len(c[1]) < k]:  # skipped like any unreadable file
        reason = f"{len(points)} points, fewer than k={k} (DGCNN needs at least k points)"
        skipped.append((name, reason))
        print(f"skipped {name}: {reason}", file=sys.stderr, flush=True)
    clouds = [c for c in clouds if len(c[1]) >= k]
    if not clouds:
        raise SystemExit(f"{PROG}: nothing to embed: every input was skipped ({len(skipped)} file(s), reasons above).")
    feats = embed_clouds(encoder.model, clouds, device, args.batch_size, not args.no_progress)
    settings = {**encoder.info(), "num_points": args.num_points, "seed": args.seed, "up_axis": args.up_axis,
                "feature": "global feature before inv_head, eval mode", "skipped": skipped,
                "inputs": [str(p) for p in args.input]}
    arrays = {"features": feats, "paths": np.array([c[0] for c in clouds]),
              "num_points": np.array([len(c[1]) for c in clouds], dtype=np.int64),
              "preprocessing": np.array([c[2] for c in clouds]), "settings": np.array(json.dumps(settings))}
    atomic_write(Path(args.output), lambda f: np.savez(f, **arrays))
    seconds = time.perf_counter() - t0
    print(f"{PROG}: {len(clouds)} cloud(s) -> {args.output} (features {feats.shape}), {len(skipped)} file(s) skipped, "
          f"{seconds:.1f} s", flush=True)
    return {"features": feats, "paths": arrays["paths"], "skipped": skipped, "settings": settings, "seconds": seconds}


if __name__ == "__main__":
    with user_errors(PROG):  # bad checkpoint or data: the message, no traceback
        main()
