"""Frozen-feature evaluation shared by eval_svm.py, eval_fewshot.py, embed.py and eval_ssl.ipynb.

- :func:`load_features`: the encoder's global features of each split, from an ``.npz`` cache keyed by the
  checkpoint's content, the model arguments and the data files (so re-running with another C skips the
  network), else extracted in eval mode and cached atomically.
- :func:`evaluate_svm`: a linear SVM per C, with C fixed (the original), chosen on test (labelled as such),
  or chosen by cross-validation on the training split only, then scored on test once.
- The result JSON: :func:`result_header`, :func:`default_output`, :func:`write_result`.
- :func:`add_eval_arguments`: the command-line arguments the evaluation scripts share.

The data set is any object with the interface of ``datasets.classification.ClassificationData``
(``tag``, ``file_tag``, ``num_points``, ``load(split)``, ``cache_fields()``): util does not import datasets.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from util.weights import RANDOM_INIT, LoadedEncoder
from util.evaluation import cross_validate_C, extract_features, linear_svm
from util.fileio import atomic_write, atomic_write_text
from util.training import eval_loader

__all__ = ["CACHE_VERSION", "C_SELECT", "DEFAULT_C_GRID", "ExtractOptions", "add_eval_arguments", "default_output",
           "embed_clouds", "evaluate_svm", "feature_cache_key", "load_features", "result_header", "summary_table",
           "svm_label", "svm_on_dataset", "svm_result_fields", "SVMConfig", "write_result", "write_tsne"]

CACHE_VERSION = 2  # 2: entries store the number of points fed to the encoder
C_SELECT = ("fixed", "test", "cv")
DEFAULT_C_GRID = (0.001, 0.01, 0.1, 1.0)


class EvalData(Protocol):
    """What :func:`load_features` needs of a data set (``datasets.classification.ClassificationData``)."""

    tag: str
    file_tag: str
    num_points: int | None

    def load(self, split: str) -> Dataset: ...

    def cache_fields(self) -> dict[str, Any]: ...


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


def load_features(encoder: LoadedEncoder, data: EvalData, splits: Sequence[str], opts: ExtractOptions) -> dict[str, Any]:
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


def _per_class_named(r: dict[str, Any], class_names: Sequence[str] | None) -> dict[str, float]:
    return {(class_names[c] if class_names is not None and c < len(class_names) else str(c)): acc
            for c, acc in r["per_class_accuracy"].items()}


@dataclass
class SVMConfig:
    """How the linear SVM is fit and its C chosen.

    C_values: one C for select "fixed"; the candidates for "test" / "cv". select: "fixed" (one C, the
    original protocol); "test" (a fit per C, the best test accuracy is reported: C selected on the test set,
    as the original notebook's hand tuning); "cv" (stratified ``cv_folds``-fold cross-validation on the train
    split only picks C, then test is scored once). solver: "svc" (the paper's SVC(kernel="linear")) or
    "svc_precomputed" (same problem, faster). seed: of the cross-validation folds.
    """

    C_values: Sequence[float] = (0.01,)
    select: str = "fixed"
    solver: str = "svc"
    cv_folds: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.select not in C_SELECT:
            raise ValueError(f"unknown C selection {self.select!r}; choose one of {C_SELECT}")
        if self.select == "fixed" and len(self.C_values) != 1:
            raise ValueError("C selection 'fixed' takes exactly one C; use 'test' or 'cv' with a grid")


def evaluate_svm(feats: dict[str, Any], svm: SVMConfig, verbose: bool = True) -> dict[str, Any]:
    """Linear SVM on the train features, scored on the test features, with C chosen as ``svm`` says.

    Args:
        feats: ``train_f``, ``train_y``, ``test_f``, ``test_y`` (see :func:`load_features`).
    Returns:
        {"best": the reported fit (C, accuracy, mean_class_accuracy, per_class_accuracy, predictions, ...),
        "results": every test-scored fit, "selection": {"method", "candidates", "chosen_C", and for cv:
        cv_accuracy per C, fold_accuracies, folds, seed, fold_sizes, assignment_sha1}}.
    """

    def fit(c: float) -> dict[str, Any]:
        r = linear_svm(feats["train_f"], feats["train_y"], feats["test_f"], feats["test_y"], C=c, solver=svm.solver)
        if verbose:
            print(f"  C = {c:g}: accuracy {100 * r['accuracy']:.2f} %, mean class accuracy "
                  f"{100 * r['mean_class_accuracy']:.2f} %  (fit {r['fit_seconds']:.1f} s)", flush=True)
        return r

    selection: dict[str, Any] = {"method": svm.select, "candidates": [float(c) for c in svm.C_values]}
    if svm.select == "cv":
        # Only the training split is passed: the test features and labels cannot influence the choice.
        cv = cross_validate_C(feats["train_f"], feats["train_y"], svm.C_values, folds=svm.cv_folds, seed=svm.seed,
                              solver=svm.solver)
        selection.update({k: v for k, v in cv.items() if k != "C"})
        if verbose:
            print("  cross-validation on the train split: " + ", ".join(
                f"C = {c:g}: {100 * a:.2f} %" for c, a in cv["cv_accuracy"].items()) + f" -> C = {cv['C']:g}",
                flush=True)
        results = [fit(cv["C"])]
    else:
        results = [fit(c) for c in svm.C_values]
    best = max(results, key=lambda r: r["accuracy"])
    selection["chosen_C"] = best["C"]
    return {"best": best, "results": results, "selection": selection}


def svm_on_dataset(encoder: LoadedEncoder, data: EvalData, kind: str, opts: ExtractOptions,
                   svm: SVMConfig) -> dict[str, Any]:
    """Features (cached) + linear SVM on one data set, with a printed summary.

    Args:
        kind: "synthetic" or "real" (printed next to every number).
    Returns:
        :func:`evaluate_svm`'s dict plus ``features`` (see :func:`load_features`), ``tag`` and ``data``.
    """
    feats = load_features(encoder, data, ("train", "test"), opts)
    hits = [s for s, c in feats["cache"].items() if c["hit"]]
    print(f"{data.tag} features: train {feats['train_f'].shape}, test {feats['test_f'].shape}"
          + (f" (from cache: {', '.join(hits)})" if hits else f" (extracted in {feats['extract_seconds']:.1f} s)"),
          flush=True)
    print(f"Linear SVM on {data.tag}, {kind} data:", flush=True)
    ev = evaluate_svm(feats, svm)
    best = ev["best"]
    print(f"{data.tag} linear-SVM accuracy: {100 * best['accuracy']:.2f} %, mean class accuracy "
          f"{100 * best['mean_class_accuracy']:.2f} % ({svm_label(ev['selection'])}; data: {kind})", flush=True)
    return {**ev, "features": feats, "tag": data.tag, "data": kind}


def svm_label(selection: dict[str, Any]) -> str:
    """How the reported C was chosen, for printed tables."""
    if selection["method"] == "cv":
        return (f"C = {selection['chosen_C']:g} chosen by {selection['folds']}-fold CV on the train split "
                f"(mean CV accuracy {100 * selection['cv_accuracy'][selection['chosen_C']]:.2f} %)")
    if selection["method"] == "test":
        return f"C = {selection['chosen_C']:g}, the best of the grid ON THE TEST SET"
    return f"C = {selection['chosen_C']:g}"


def svm_result_fields(ev: dict[str, Any], class_names: Sequence[str] | None, solver: str) -> dict[str, Any]:
    """The SVM part of an eval_svm.py result JSON."""
    best = ev["best"]
    return {
        "classifier": ("sklearn.svm.SVC(kernel='linear') on raw (unnormalized) features" if solver == "svc" else
                       "sklearn.svm.SVC(kernel='precomputed') on the linear Gram matrix of the raw features"),
        "svm_solver": solver,
        "C": best["C"],
        "C_selection": ev["selection"],
        "C_selected_on_test": ev["selection"]["method"] == "test",
        "accuracy": best["accuracy"],
        "mean_class_accuracy": best["mean_class_accuracy"],
        "results": [{"C": r["C"], "accuracy": r["accuracy"], "mean_class_accuracy": r["mean_class_accuracy"],
                     "per_class_accuracy": _per_class_named(r, class_names), "fit_seconds": r["fit_seconds"],
                     "predict_seconds": r["predict_seconds"]} for r in ev["results"]],
    }


def result_header(task: str, kind: str, encoder: LoadedEncoder, data: EvalData, num_points: int | None) -> dict:
    """The fields every evaluation JSON starts with: the task, the data (synthetic or real) and the model."""
    fields = data.cache_fields()
    return {"task": task, "data": kind, "dataset": fields["dataset"], "variant": fields["variant"],
            "data_root": fields["data_root"], **encoder.info(), "num_points": num_points,
            "num_points_requested": "all stored" if data.num_points is None else data.num_points}


def default_output(encoder_info: dict[str, Any], data: EvalData, prefix: str) -> Path:
    """Next to the checkpoint (``<prefix>_<ckpt stem>_<data>.json``); ``outputs/eval/`` for a random encoder."""
    if encoder_info["checkpoint"] == RANDOM_INIT:
        return Path("outputs") / "eval" / f"{prefix}_random_{data.file_tag}.json"
    ckpt = Path(encoder_info["checkpoint"])
    return ckpt.parent / f"{prefix}_{ckpt.stem}_{data.file_tag}.json"


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write the result JSON atomically and print where."""
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    print(f"Result: {path}", flush=True)


def write_tsne(feats: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None, path: Path,
               title: str) -> str:
    """t-SNE PNG of ``feats`` (N, D) coloured by ``labels`` (N,); returns the path."""
    from util.plotting import plot_tsne

    plot_tsne(feats, labels, class_names, path, title=title)
    print(f"t-SNE plot: {path}", flush=True)
    return str(path)


def summary_table(results: dict[str, dict[str, Any]]) -> None:
    """One line per data set: accuracy, mean class accuracy, C and how it was chosen, sizes, data kind."""
    print(f"{'dataset':<28} {'accuracy':>9} {'mean cls acc':>13} {'C':>8} {'train':>7} {'test':>7}  data, C chosen by")
    for r in results.values():
        b, f = r["best"], r["features"]
        print(f"{r['tag']:<28} {100 * b['accuracy']:>8.2f}% {100 * b['mean_class_accuracy']:>12.2f}% "
              f"{b['C']:>8g} {len(f['train_y']):>7d} {len(f['test_y']):>7d}  {r['data']}, "
              f"{r['selection']['method']}")


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


def embed_clouds(model: torch.nn.Module, clouds: Sequence[tuple[str, np.ndarray, Any]], device: torch.device | str,
                 batch_size: int, progress: bool = False) -> np.ndarray:
    """(M, D) float32 frozen features (:func:`util.evaluation.extract_features`) of ``clouds``
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
