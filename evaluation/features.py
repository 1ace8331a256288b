"""Frozen features of a point encoder: extraction and the ``.npz`` cache.

- :func:`extract_features`: run a point encoder in eval mode over a loader, collect its global features.
- :func:`load_features`: the features of each split of a data set, from an ``.npz`` cache keyed by the
  checkpoint's content, the model arguments and the data files (so re-running with another C skips the
  network), else extracted and cached atomically.
- :func:`embed_clouds`: features of a list of clouds of any sizes (embed.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from datasets.classification import ClassificationData

from util.weights import LoadedEncoder
from util.fileio import atomic_write
from util.progress import progress_bar
from util.loaders import eval_loader

__all__ = ["CACHE_VERSION", "ExtractOptions", "embed_clouds", "extract_features", "feature_cache_key",
           "load_features"]

CACHE_VERSION = 2  # 2: entries store the number of points fed to the encoder


@torch.no_grad()
def extract_features(
    model: nn.Module,
    loader: Any,
    device: torch.device | str,
    progress: bool = True,
    desc: str = "features",
) -> tuple[np.ndarray, np.ndarray]:
    """Run a point encoder over a loader and collect its global features.

    The model is put in eval mode for the pass (no dropout, BatchNorm running statistics) and gradients
    are off; its previous train/eval mode is restored afterwards so a training loop can call this for
    best-model selection.

    Args:
        model: point encoder; forward(x (B, 3, P)) -> (B, D).
        loader: iterable of batches ``(points (B, P, 3), labels (B,))``; extra trailing items are ignored.
        device: where to run the model (the model is NOT moved; pass the device it lives on).
        progress: show progress (a bar on a terminal, plain lines in a log: util.progress).
        desc: progress-bar label.

    Returns:
        feats: np.float32 array (N, D); labels: np.int64 array (N,).
    """
    device = torch.device(device)
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = model.training
    model.eval()
    feats: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    iterator = progress_bar(loader, desc=desc, enabled=progress)
    try:
        for batch in iterator:
            points, label = batch[0], batch[1]
            points = torch.as_tensor(points).to(device=device, dtype=dtype)
            x = points.transpose(1, 2).contiguous()  # (B, P, 3) -> (B, 3, P)
            out = model(x)
            if out.dim() != 2:
                raise ValueError(
                    f"extract_features expects the model to return a (B, D) global feature, got shape "
                    f"{tuple(out.shape)}; use a point encoder (models.build_point_encoder), not a "
                    "segmentation or classification network"
                )
            feats.append(out.detach().float().cpu().numpy())
            labels.append(torch.as_tensor(label).reshape(-1).cpu().numpy().astype(np.int64))  # (B,)
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("extract_features got an empty loader: the dataset has no samples")
    return np.concatenate(feats, axis=0).astype(np.float32), np.concatenate(labels, axis=0)


@dataclass
class ExtractOptions:
    """How features are extracted and cached.

    device: where the encoder runs; batch_size / num_workers: of the feature loader; cache_dir: the
    ``.npz`` cache folder (None: ``cache/features``); use_cache: read and write the cache; progress: bars.
    """

    device: torch.device | str = "cpu"
    batch_size: int = 32
    num_workers: int = 0
    cache_dir: str | os.PathLike | None = None
    use_cache: bool = True
    progress: bool = True

    @property
    def cache_path(self) -> Path:
        """``cache/features`` (git-ignored) unless given; entries are keyed by checkpoint content."""
        return Path(self.cache_dir) if self.cache_dir is not None else Path("cache") / "features"


def feature_cache_key(encoder_info: dict[str, Any], data_fields: dict[str, Any], split: str) -> str:
    """sha1 of everything that determines the features: weights content, model, data files (size + mtime)."""
    key = {"version": CACHE_VERSION, "checkpoint_sha1": encoder_info["checkpoint_sha1"],
           "model": encoder_info["model"], "model_args": encoder_info["model_args"], "split": split, **data_fields}
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez through util.fileio.atomic_write: a killed run never leaves a partial cache entry."""
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_features(encoder: LoadedEncoder, data: ClassificationData, splits: Sequence[str],
                  opts: ExtractOptions) -> dict[str, Any]:
    """Features of each split, from the cache when present, else extracted (and cached).

    Returns:
        dict: ``<split>_f`` (N, D) float32 and ``<split>_y`` (N,) int64 per split, ``class_names`` (list or
        None), ``num_points`` (points per cloud actually fed to the encoder), ``cache`` {split: {"path",
        "hit"}}, ``extract_seconds``.
    """
    info, fields = encoder.info(), data.cache_fields()
    out: dict[str, Any] = {"class_names": None, "cache": {}, "extract_seconds": 0.0, "num_points": None}
    for split in splits:
        key = feature_cache_key(info, fields, split)
        points_tag = "all" if data.num_points is None else data.num_points
        path = opts.cache_path / f"{data.file_tag}_{split}_{points_tag}_{key[:16]}.npz"
        if opts.use_cache and path.is_file():
            with np.load(path, allow_pickle=False) as z:
                feats, labels, used = z["feats"], z["labels"], int(z["num_points"])
                names = [str(s) for s in z["class_names"]] if "class_names" in z.files else None
            out["cache"][split] = {"path": str(path), "hit": True}
        else:
            ds = data.load(split)
            used = int(ds.num_points)
            # Differs from the original: no shuffling (the original's loaders used shuffle=True); the features
            # are the same, only the row order fed to the SVM changes.
            loader = eval_loader(ds, opts.batch_size, torch.device(opts.device), opts.num_workers)
            t0 = time.perf_counter()
            feats, labels = extract_features(encoder.model, loader, opts.device, progress=opts.progress,
                                             desc=f"{data.file_tag} {split}")
            out["extract_seconds"] += time.perf_counter() - t0
            names = list(ds.class_names) if getattr(ds, "class_names", None) is not None else None
            if opts.use_cache:
                arrays = {"feats": feats, "labels": labels, "num_points": np.array(used)}
                if names is not None:
                    arrays["class_names"] = np.array(names, dtype=str)
                _save_npz_atomic(path, arrays)
            out["cache"][split] = {"path": str(path) if opts.use_cache else None, "hit": False}
        out[f"{split}_f"], out[f"{split}_y"], out["num_points"] = feats, labels, used
        if names is not None:
            out["class_names"] = names
    return out


def embed_clouds(model: torch.nn.Module, clouds: Sequence[tuple[str, np.ndarray, Any]], device: torch.device | str,
                 batch_size: int, progress: bool = False) -> np.ndarray:
    """(M, D) float32 frozen features (:func:`extract_features`) of ``clouds``
    ``[(name, points (n, 3) float32, ...)]`` in their order; clouds of equal size share batches."""
    feats = np.zeros((len(clouds), 0), dtype=np.float32)
    by_size: dict[int, list[int]] = {}
    for i, (_, points, _) in enumerate(clouds):
        by_size.setdefault(len(points), []).append(i)
    for size, rows in sorted(by_size.items()):
        items = [(torch.from_numpy(clouds[i][1]), i) for i in rows]  # (points (size, 3), row)
        f, order = extract_features(model, DataLoader(items, batch_size=batch_size), device, progress=progress,
                                    desc=f"{size} points")
        if feats.shape[1] == 0:
            feats = np.zeros((len(clouds), f.shape[1]), dtype=np.float32)
        feats[order] = f
    return feats
