"""What the evaluation commands (eval_svm.py, eval_fewshot.py) share: their common arguments and the result JSON
(:func:`result_header`, :func:`default_output`, :func:`write_result`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets.classification import ClassificationData
from util.weights import RANDOM_INIT, LoadedEncoder
from util.fileio import atomic_write_text

__all__ = ["add_eval_arguments", "default_output", "result_header", "write_result"]


def result_header(task: str, kind: str, encoder: LoadedEncoder, data: ClassificationData,
                  num_points: int | None) -> dict:
    """The fields every evaluation JSON starts with: the task, the data (synthetic or real) and the model."""
    fields = data.cache_fields()
    return {"task": task, "data": kind, "dataset": fields["dataset"], "variant": fields["variant"],
            "data_root": fields["data_root"], **encoder.info(), "num_points": num_points,
            "num_points_requested": "all stored" if data.num_points is None else data.num_points}


def default_output(encoder_info: dict[str, Any], data: ClassificationData, prefix: str) -> Path:
    """Next to the checkpoint (``<prefix>_<ckpt stem>_<data>.json``); ``outputs/eval/`` for a random encoder."""
    if encoder_info["checkpoint"] == RANDOM_INIT:
        return Path("outputs") / "eval" / f"{prefix}_random_{data.file_tag}.json"
    ckpt = Path(encoder_info["checkpoint"])
    return ckpt.parent / f"{prefix}_{ckpt.stem}_{data.file_tag}.json"


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write the result JSON atomically and print where."""
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    print(f"Result: {path}", flush=True)


def add_eval_arguments(p: argparse.ArgumentParser, datasets: Sequence[str], variants: Sequence[str],
                       variant_help: str, num_points_default: int | None, num_points_help: str) -> None:
    """Arguments of the evaluation scripts: checkpoint, model, data, features, cache, output.

    ``--variant`` defaults to None (not given): the script resolves it with the data set's rule
    (``datasets.classification.check_variant``, described by ``variant_help``).
    """
    p.add_argument("--model_path", required=True,
                   help=f"point-encoder weights (.pth state dict: published dgcnn_cls_best.pth or this project's "
                        f"point_encoder_best.pth), or '{RANDOM_INIT}' for a randomly initialized encoder")
    p.add_argument("--model", choices=["dgcnn", "dgcnn_seg", "pointnet"], default=None,
                   help="encoder (default: the checkpoint's sidecar meta, else guessed from its keys, else dgcnn)")
    p.add_argument("--k", type=int, default=None,
                   help="kNN size (default: the checkpoint's meta, else 15 as in the original scripts/script.sh "
                        "and eval_ssl.ipynb)")
    p.add_argument("--emb_dims", type=int, default=None,
                   help="embedding size (default: meta, else read from inv_head.0.weight, else 1024 (paper))")
    p.add_argument("--dataset", choices=datasets, default="modelnet40",
                   help="evaluation set (custom: a root written by python -m datasets.prepare_meshes)")
    p.add_argument("--variant", choices=variants, default=None, help=variant_help)
    p.add_argument("--data_root", default="data", help="data root holding the dataset folders")
    p.add_argument("--num_points", type=int, default=num_points_default, help=num_points_help)
    p.add_argument("--batch_size", type=int, default=32, help="feature-extraction batch size")
    p.add_argument("--num_workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed (random-init weights; few-shot episodes; CV folds)")
    p.add_argument("--cache_dir", default=None,
                   help="feature cache folder (default: cache/features; files are keyed by checkpoint content)")
    p.add_argument("--no_cache", action="store_true", help="always extract features; do not read or write the cache")
    p.add_argument("--output", default=None,
                   help="JSON result path (default: next to the checkpoint; outputs/eval/ for random)")
    p.add_argument("--plot", action="store_true",
                   help="also write a t-SNE PNG of the evaluated features (SVM: the test split)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
