"""Linear-SVM probe of a frozen point encoder on ModelNet40 / ScanObjectNN (CrossPoint's eval_ssl.ipynb as a CLI).

    python eval_svm.py --model_path dgcnn_cls_best.pth --dataset modelnet40 --data_root data
    python eval_svm.py --model_path outputs/exp/checkpoints/point_encoder_best.pth --dataset scanobjectnn \
        --C_grid 0.001 0.01 0.1 1
    python eval_svm.py --model_path random --dataset modelnet40 --data_root data   # random-init baseline

Features are the encoder's global feature (DGCNN: 2 * emb_dims = 2048, before ``inv_head``) of the first
``--num_points`` points of each cloud, in eval mode; they are cached in an .npz keyed by checkpoint content,
model arguments and data files, so re-running with another C skips the network.
The helpers here (build_model_from_checkpoint, load_features, evaluate_svm) are also used by eval_fewshot.py
and eval_ssl.ipynb.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from datasets.io import DatasetError
from datasets.synthetic import data_kind
from util.checkpoint import atomic_write_text, load_pretrained, load_state_dict_file, read_weights_meta
from util.evaluation import SVM_SOLVERS, FewShotDataError, extract_features, linear_svm

DATASETS = ("modelnet40", "scanobjectnn")
SCANOBJECTNN_VARIANTS = ("obj_bg", "obj_only", "pb_t50_rs")
PUBLISHED_K = 15  # scripts/script.sh of the original trains with --k 15; eval_ssl.ipynb evaluates with k=15
PUBLISHED_EMB_DIMS = 1024
RANDOM_INIT = "random"
CACHE_VERSION = 1


class CheckpointError(ValueError):
    """The weights file is not a point encoder, or does not match the model built for it."""


# Errors caused by the user's files or arguments: the CLIs print their message without a traceback.
USER_ERRORS = (CheckpointError, FewShotDataError, DatasetError, FileNotFoundError)


def _sha1_file(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _infer_model_name(state_dict: dict[str, torch.Tensor]) -> str | None:
    """Guess the encoder from its keys: the part-seg DGCNN has a transform net, the classification one conv5."""
    if any(k.startswith("transform_net.") for k in state_dict):
        return "dgcnn_seg"
    if "conv5.0.weight" in state_dict and state_dict["conv5.0.weight"].dim() == 3:
        return "dgcnn"
    return None


def build_model_from_checkpoint(
    model_path: str | os.PathLike,
    model: str | None = None,
    k: int | None = None,
    emb_dims: int | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    edgeconv: str = "fast",
    verbose: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """Build a point encoder and load a weights file into it (strict), or initialize it randomly.

    Precedence for each of model / k / emb_dims: the explicit argument, then the sidecar meta
    (``X.json`` next to ``X.pth``: ``model``, ``model_args``), then what the state dict shows (emb_dims from
    ``inv_head.0.weight``, model from its keys), then the published values (dgcnn, k=15, emb_dims=1024).
    An explicit k that contradicts the meta is used but warned about (k is not visible in the weights).

    Args:
        model_path: a ``.pth`` state dict (published ``dgcnn_cls_best.pth``-style or this project's), or
            ``"random"`` for a randomly initialized encoder (seeded with ``seed``).
        device: where the model is put.

    Returns:
        (model in eval mode on ``device``, info dict: checkpoint, checkpoint_sha1, model, model_args,
        sources, kind, meta).
    """
    from models import build_point_encoder

    def say(msg: str) -> None:
        if verbose:
            print(msg, flush=True)

    meta: dict[str, Any] | None = None
    state_dict: dict[str, torch.Tensor] | None = None
    random_init = str(model_path) == RANDOM_INIT
    if not random_init:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no such checkpoint file. Pass a point-encoder .pth (e.g. dgcnn_cls_best.pth or "
                f"<run>/checkpoints/point_encoder_best.pth) or --model_path {RANDOM_INIT}"
            )
        meta = read_weights_meta(path)
        if meta is not None and meta.get("kind") not in (None, "point_encoder"):
            raise CheckpointError(
                f"{path}: its sidecar {path.with_suffix('.json').name} says kind={meta.get('kind')!r} "
                f"(model {meta.get('model')!r}), not a point encoder. Pass a point-encoder checkpoint, e.g. "
                "<run>/checkpoints/point_encoder_best.pth or the published dgcnn_cls_best.pth"
            )
        state_dict = load_state_dict_file(path)
    meta_args = dict((meta or {}).get("model_args") or {})
    sources: dict[str, str] = {}

    if model is not None:
        name, sources["model"] = model, "command line"
    elif meta is not None and meta.get("model"):
        name, sources["model"] = str(meta["model"]), "checkpoint meta"
    elif state_dict is not None and _infer_model_name(state_dict) is not None:
        name, sources["model"] = str(_infer_model_name(state_dict)), "state-dict keys"
    else:
        name, sources["model"] = "dgcnn", "default"

    if emb_dims is not None:
        emb, sources["emb_dims"] = int(emb_dims), "command line"
    elif "emb_dims" in meta_args:
        emb, sources["emb_dims"] = int(meta_args["emb_dims"]), "checkpoint meta"
    elif state_dict is not None and "inv_head.0.weight" in state_dict:
        emb, sources["emb_dims"] = int(state_dict["inv_head.0.weight"].shape[0]), "state-dict shapes"
    else:
        emb, sources["emb_dims"] = PUBLISHED_EMB_DIMS, "published default"

    if k is not None:
        kk, sources["k"] = int(k), "command line"
        if "k" in meta_args and int(meta_args["k"]) != kk:
            print(
                f"WARNING: --k {kk} differs from the checkpoint's k={meta_args['k']} (sidecar meta); the "
                "features will not be the ones the encoder was trained to produce",
                file=sys.stderr,
                flush=True,
            )
    elif "k" in meta_args:
        kk, sources["k"] = int(meta_args["k"]), "checkpoint meta"
    else:
        # Differs from the original: eval_fewshot.py hard-coded --k 5 while the published model was trained
        # with k=15; here k comes from the checkpoint's meta, else the published 15, and is printed.
        kk, sources["k"] = PUBLISHED_K, "published default (original scripts/script.sh --k 15)"

    torch.manual_seed(seed)
    net = build_point_encoder(name, k=kk, emb_dims=emb, edgeconv=edgeconv)
    if state_dict is not None:
        try:
            load_pretrained(net, state_dict)
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(
                f"{model_path}: does not load into {name}(k={kk}, emb_dims={emb}) "
                f"[model from {sources['model']}, emb_dims from {sources['emb_dims']}]. Is this a point-encoder "
                "checkpoint? Expected keys like conv1.0.weight, conv5.0.weight, inv_head.0.weight "
                f"(pass --model / --emb_dims if they differ).\n{e}"
            ) from e
    net = net.to(device).eval()
    info = {
        "checkpoint": RANDOM_INIT if random_init else str(Path(model_path).resolve()),
        "checkpoint_sha1": f"random-seed-{seed}" if random_init else _sha1_file(Path(model_path)),
        "model": name,
        "model_args": {"k": kk, "emb_dims": emb} if name != "pointnet" else {"emb_dims": emb},
        "sources": sources,
        "kind": "point_encoder",
        "feat_dim": int(getattr(net, "feat_dim", 0)) or None,
        "meta": meta,
    }
    arg_text = ", ".join(f"{a}={v} (from {sources[a]})" for a, v in info["model_args"].items())
    say(f"Encoder: {name}({arg_text}) from {'random init, seed %d' % seed if random_init else model_path}")
    return net, info


def load_split(dataset: str, data_root: str | os.PathLike, split: str, num_points: int, variant: str) -> Any:
    """The ModelNet40 / ScanObjectNN dataset object for ``split`` (items: points (num_points, 3), label)."""
    if dataset == "modelnet40":
        from datasets.modelnet40 import ModelNet40

        return ModelNet40(data_root, split=split, num_points=num_points)
    if dataset == "scanobjectnn":
        from datasets.scanobjectnn import ScanObjectNN

        return ScanObjectNN(data_root, split=split, variant=variant, num_points=num_points)
    raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")


def _data_fingerprint(dataset: str, data_root: Path, variant: str | None) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every file in the dataset's folder; cheap, no data is read."""
    if dataset == "modelnet40":
        from datasets.modelnet40 import MODELNET40_DIR

        base = data_root / MODELNET40_DIR
    else:
        from datasets.scanobjectnn import find_variant_dir

        base = find_variant_dir(data_root, variant or "obj_bg")
    files = sorted(p for p in base.iterdir() if p.is_file()) if base.is_dir() else []
    return [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def feature_cache_key(
    info: dict[str, Any], dataset: str, variant: str | None, split: str, num_points: int, data_root: str | os.PathLike
) -> str:
    """sha1 of everything that determines the features: weights content, model, data files (size + mtime)."""
    root = Path(data_root).resolve()
    key = {
        "version": CACHE_VERSION,
        "checkpoint_sha1": info["checkpoint_sha1"],
        "model": info["model"],
        "model_args": info["model_args"],
        "dataset": dataset,
        "variant": variant,
        "split": split,
        "num_points": num_points,
        "data_root": str(root),
        "data_files": _data_fingerprint(dataset, root, variant),
    }
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()


def default_cache_dir() -> Path:
    """``cache/features`` (git-ignored); entries are keyed by checkpoint content, so checkpoints never collide."""
    return Path("cache") / "features"


def _save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """np.savez to a temporary file next to ``path``, then rename: a killed run never leaves a partial cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # plain open(): permissions follow the umask
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_features(
    model: nn.Module,
    info: dict[str, Any],
    dataset: str,
    data_root: str | os.PathLike,
    splits: Sequence[str] = ("train", "test"),
    variant: str = "obj_bg",
    num_points: int = 1024,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Features of each split, from the .npz cache when present, else extracted (and cached).

    Returns:
        dict: ``<split>_f`` (N, D) float32, ``<split>_y`` (N,) int64 per split, ``class_names`` (list or None),
        ``cache`` {split: {"path", "hit"}}, ``extract_seconds``.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")
    var = variant if dataset == "scanobjectnn" else None
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out: dict[str, Any] = {"class_names": None, "cache": {}, "extract_seconds": 0.0}
    for split in splits:
        key = feature_cache_key(info, dataset, var, split, num_points, data_root)
        tag = dataset if var is None else f"{dataset}_{var}"
        path = cdir / f"{tag}_{split}_{num_points}_{key[:16]}.npz"
        if use_cache and path.is_file():
            with np.load(path, allow_pickle=False) as z:
                feats, labels = z["feats"], z["labels"]
                names = [str(s) for s in z["class_names"]] if "class_names" in z.files else None
            out["cache"][split] = {"path": str(path), "hit": True}
        else:
            ds = load_split(dataset, data_root, split, num_points, variant)
            # Differs from the original: no shuffling (the original notebook's loaders used shuffle=True); the
            # features are the same, only the row order fed to the SVM changes.
            loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
            t0 = time.perf_counter()
            feats, labels = extract_features(model, loader, device, progress=progress, desc=f"{tag} {split}")
            out["extract_seconds"] += time.perf_counter() - t0
            names = list(ds.class_names) if getattr(ds, "class_names", None) is not None else None
            if use_cache:
                arrays = {"feats": feats, "labels": labels}
                if names is not None:
                    arrays["class_names"] = np.array(names, dtype=str)
                _save_npz_atomic(path, **arrays)
            out["cache"][split] = {"path": str(path) if use_cache else None, "hit": False}
        out[f"{split}_f"], out[f"{split}_y"] = feats, labels
        if names is not None:
            out["class_names"] = names
    return out


def evaluate_svm(
    feats: dict[str, Any], C_values: Sequence[float], verbose: bool = True, solver: str = "svc"
) -> dict[str, Any]:
    """Fit a linear SVM for each C on the train features and score the test features.

    ``solver``: "svc" (the paper's SVC(kernel="linear")) or "svc_precomputed" (the same problem from the linear
    Gram matrix, faster; see util.evaluation.linear_svm).

    Returns dict: ``results`` (one per C: C, accuracy, mean_class_accuracy, per_class_accuracy, fit_seconds,
    predictions), and ``best`` (the entry with the highest accuracy; with one C, that C).
    """
    results = []
    for c in C_values:
        r = linear_svm(feats["train_f"], feats["train_y"], feats["test_f"], feats["test_y"], C=c, solver=solver)
        if verbose:
            print(
                f"  C = {c:g}: accuracy {100 * r['accuracy']:.2f} %, mean class accuracy "
                f"{100 * r['mean_class_accuracy']:.2f} %  (fit {r['fit_seconds']:.1f} s)",
                flush=True,
            )
        results.append(r)
    best = max(results, key=lambda r: r["accuracy"])
    return {"results": results, "best": best}


def _jsonable_result(r: dict[str, Any], class_names: Sequence[str] | None) -> dict[str, Any]:
    per_class = {
        (class_names[c] if class_names is not None and c < len(class_names) else str(c)): acc
        for c, acc in r["per_class_accuracy"].items()
    }
    return {
        "C": r["C"],
        "accuracy": r["accuracy"],
        "mean_class_accuracy": r["mean_class_accuracy"],
        "per_class_accuracy": per_class,
        "fit_seconds": r["fit_seconds"],
        "predict_seconds": r["predict_seconds"],
    }


def result_header(task: str, kind: str, args: argparse.Namespace, info: dict[str, Any], variant: str | None) -> dict:
    """The fields every evaluation JSON starts with: the task, the data (synthetic or real) and the model."""
    return {
        "task": task,
        "data": kind,
        "dataset": args.dataset,
        "variant": variant,
        "data_root": str(Path(args.data_root).resolve()),
        "checkpoint": info["checkpoint"],
        "checkpoint_sha1": info["checkpoint_sha1"],
        "model": info["model"],
        "model_args": info["model_args"],
        "model_args_sources": info["sources"],
        "num_points": args.num_points,
    }


def default_output(info: dict[str, Any], dataset: str, variant: str | None, prefix: str) -> Path:
    tag = dataset if variant is None else f"{dataset}_{variant}"
    if info["checkpoint"] == RANDOM_INIT:
        return Path("outputs") / "eval" / f"{prefix}_random_{tag}.json"
    ckpt = Path(info["checkpoint"])
    return ckpt.parent / f"{prefix}_{ckpt.stem}_{tag}.json"


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Arguments shared by eval_svm.py and eval_fewshot.py (checkpoint, model, data, features, cache)."""
    p.add_argument("--model_path", required=True,
                   help=f"point-encoder weights (.pth state dict: published dgcnn_cls_best.pth or this project's "
                        f"point_encoder_best.pth), or '{RANDOM_INIT}' for a randomly initialized encoder")
    p.add_argument("--model", choices=["dgcnn", "dgcnn_seg", "pointnet"], default=None,
                   help="encoder (default: the checkpoint's sidecar meta, else guessed from its keys, else dgcnn)")
    p.add_argument("--k", type=int, default=None,
                   help=f"kNN size (default: the checkpoint's meta, else {PUBLISHED_K} as in the original "
                        "scripts/script.sh and eval_ssl.ipynb)")
    p.add_argument("--emb_dims", type=int, default=None,
                   help=f"embedding size (default: meta, else read from inv_head.0.weight, else "
                        f"{PUBLISHED_EMB_DIMS} (paper))")
    p.add_argument("--dataset", choices=DATASETS, default="modelnet40", help="evaluation dataset")
    p.add_argument("--variant", choices=SCANOBJECTNN_VARIANTS, default="obj_bg",
                   help="ScanObjectNN variant (paper and original code: obj_bg = main_split)")
    p.add_argument("--data_root", default="data", help="data root holding the dataset folders")
    p.add_argument("--num_points", type=int, default=1024,
                   help="points per cloud, the first N of each (original: 1024)")
    p.add_argument("--batch_size", type=int, default=32, help="feature-extraction batch size")
    p.add_argument("--num_workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed (random-init weights; few-shot episodes)")
    p.add_argument("--cache_dir", default=None,
                   help="feature cache folder (default: cache/features; files are keyed by checkpoint content)")
    p.add_argument("--no_cache", action="store_true", help="always extract features; do not read or write the cache")
    p.add_argument("--output", default=None,
                   help="JSON result path (default: next to the checkpoint; outputs/eval/ for random)")
    p.add_argument("--plot", action="store_true",
                   help="also write a t-SNE PNG of the evaluated features (SVM: the test split)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Linear-SVM evaluation of a frozen point encoder (CrossPoint Table 1/2)")
    add_model_args(p)
    p.add_argument("--C", type=float, default=0.01,
                   help="SVM C (original eval_ssl.ipynb: 0.01; the original training script's model selection: 0.1)")
    p.add_argument("--C_grid", type=float, nargs="+", default=None,
                   help="evaluate several C values (features extracted once); the best is reported, note that it is "
                        "selected on the test set like the original notebook's hand tuning")
    p.add_argument("--svm_solver", choices=SVM_SOLVERS, default="svc",
                   help="svc: SVC(kernel='linear') (original); svc_precomputed: the same SVM problem solved from the "
                        "precomputed linear Gram matrix, same predictions up to float rounding, about 3x faster on "
                        "ModelNet40 (needs N_train^2 float64: 0.8 GB)")
    return p


def setup_model(args: argparse.Namespace) -> tuple[nn.Module, dict[str, Any], torch.device]:
    """Resolve the device and build the encoder from the parsed CLI arguments."""
    from util.training import resolve_device

    device = resolve_device(args.device)
    model, info = build_model_from_checkpoint(
        args.model_path, model=args.model, k=args.k, emb_dims=args.emb_dims, device=device, seed=args.seed
    )
    return model, info, device


def write_tsne(
    feats: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None, path: Path, title: str
) -> None:
    """t-SNE PNG of ``feats`` (N, D) coloured by ``labels`` (N,)."""
    from util.plotting import plot_tsne

    plot_tsne(feats, labels, class_names, path, title=title)
    print(f"t-SNE plot: {path}", flush=True)


def evaluate_dataset(
    model: nn.Module,
    info: dict[str, Any],
    dataset: str,
    data_root: str | os.PathLike,
    C_values: Sequence[float] = (0.01,),
    variant: str = "obj_bg",
    num_points: int = 1024,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: bool = True,
    solver: str = "svc",
) -> dict[str, Any]:
    """Features (cached) + linear SVM for each C on one dataset; prints a summary.

    Returns dict: ``features`` (see load_features), ``results`` (one per C), ``best`` (highest accuracy,
    with ``predictions`` (N_test,)), ``data`` ("synthetic" or "real"), ``tag``.
    """
    var = variant if dataset == "scanobjectnn" else None
    kind = data_kind(data_root)
    tag = dataset if var is None else f"{dataset} ({var})"
    feats = load_features(
        model, info, dataset, data_root, ("train", "test"), variant=variant, num_points=num_points,
        device=device, batch_size=batch_size, num_workers=num_workers, cache_dir=cache_dir,
        use_cache=use_cache, progress=progress,
    )
    hits = [s for s, c in feats["cache"].items() if c["hit"]]
    print(
        f"{tag} features: train {feats['train_f'].shape}, test {feats['test_f'].shape}"
        + (f" (from cache: {', '.join(hits)})" if hits else f" (extracted in {feats['extract_seconds']:.1f} s)"),
        flush=True,
    )
    print(f"Linear SVM on {tag}, {kind} data:", flush=True)
    ev = evaluate_svm(feats, C_values, solver=solver)
    best = ev["best"]
    label = "best over the C grid, selected on the test set" if len(C_values) > 1 else f"C = {best['C']:g}"
    print(
        f"{tag} linear-SVM accuracy: {100 * best['accuracy']:.2f} %, mean class accuracy "
        f"{100 * best['mean_class_accuracy']:.2f} % ({label}; data: {kind})",
        flush=True,
    )
    return {"features": feats, "results": ev["results"], "best": best, "data": kind, "tag": tag}


def summary_table(results: dict[str, dict[str, Any]]) -> None:
    """Print one line per dataset: accuracy, mean class accuracy, C, sizes, data kind (results of evaluate_dataset)."""
    print(f"{'dataset':<28} {'accuracy':>9} {'mean cls acc':>13} {'C':>8} {'train':>7} {'test':>7}  data")
    for r in results.values():
        b, f = r["best"], r["features"]
        print(
            f"{r['tag']:<28} {100 * b['accuracy']:>8.2f}% {100 * b['mean_class_accuracy']:>12.2f}% "
            f"{b['C']:>8g} {len(f['train_y']):>7d} {len(f['test_y']):>7d}  {r['data']}"
        )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    t_start = time.perf_counter()
    model, info, device = setup_model(args)
    variant = args.variant if args.dataset == "scanobjectnn" else None
    C_values = args.C_grid if args.C_grid else [args.C]
    ev = evaluate_dataset(
        model, info, args.dataset, args.data_root, C_values, variant=args.variant, num_points=args.num_points,
        device=device, batch_size=args.batch_size, num_workers=args.num_workers, cache_dir=args.cache_dir,
        use_cache=not args.no_cache, progress=not args.no_progress, solver=args.svm_solver,
    )
    feats, best = ev["features"], ev["best"]
    names = feats["class_names"]
    out_path = Path(args.output) if args.output else default_output(info, args.dataset, variant, "svm")
    result = {
        **result_header("linear_svm", ev["data"], args, info, variant),
        "classifier": (
            "sklearn.svm.SVC(kernel='linear') on raw (unnormalized) features" if args.svm_solver == "svc" else
            "sklearn.svm.SVC(kernel='precomputed') on the linear Gram matrix of the raw (unnormalized) features"
        ),
        "svm_solver": args.svm_solver,
        "C": best["C"],
        "C_selected_on_test": len(C_values) > 1,
        "accuracy": best["accuracy"],
        "mean_class_accuracy": best["mean_class_accuracy"],
        "results": [_jsonable_result(r, names) for r in ev["results"]],
        "n_train": int(len(feats["train_y"])),
        "n_test": int(len(feats["test_y"])),
        "feat_dim": int(feats["train_f"].shape[1]),
        "class_names": names,
        "feature_cache": feats["cache"],
        "extract_seconds": feats["extract_seconds"],
        "total_seconds": time.perf_counter() - t_start,
        "device": str(device),
    }
    if args.plot:
        png = out_path.with_name(out_path.stem + "_tsne.png")
        title = f"t-SNE, {ev['tag']} test features ({ev['data']} data)"
        write_tsne(feats["test_f"], feats["test_y"], names, png, title)
        result["tsne_png"] = str(png)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_path, json.dumps(result, indent=2))
    print(f"Result: {out_path}", flush=True)
    result["predictions"] = best["predictions"]
    return result


if __name__ == "__main__":
    try:
        main()
    except USER_ERRORS as error:  # bad checkpoint or data: the message, no traceback
        sys.exit(f"eval_svm.py: error: {error}")
