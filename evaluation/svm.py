"""Linear SVM on frozen features, with its choice of C.

- :func:`linear_svm`: scikit-learn ``SVC(kernel="linear")`` fit on the train features and scored on the test
  features (or the same problem from a precomputed Gram matrix).
- :func:`cross_validate_C`: C chosen by stratified k-fold cross-validation on the training split only.
- :class:`SVMConfig` / :func:`evaluate_svm`: C fixed (the original), chosen on test (labelled as such) or by
  cross-validation, then test scored; :func:`svm_on_dataset` adds the cached features and a printed summary.
- :func:`svm_result_fields`, :func:`svm_label`: the SVM part of a result JSON and of printed lines.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from datasets.classification import ClassificationData
from evaluation.features import ExtractOptions, load_features
from metrics.classification import class_accuracies
from util.weights import LoadedEncoder
from util.fileio import InputFileError

__all__ = ["C_SELECT", "DEFAULT_C_GRID", "SVM_SOLVERS", "SVMConfig", "TooFewSamplesError",
           "cross_validate_C", "evaluate_svm", "linear_svm", "svm_label", "svm_on_dataset",
           "svm_result_fields"]

SVM_SOLVERS = ("svc", "svc_precomputed")
C_SELECT = ("fixed", "test", "cv")
DEFAULT_C_GRID = (0.001, 0.01, 0.1, 1.0)


class TooFewSamplesError(InputFileError):
    """The training split has too few samples of a class for the requested cross-validation."""


def _check_svm_inputs(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray,
                      test_y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four arrays as numpy, labels flattened; raises ValueError naming what does not fit."""
    train_f = np.asarray(train_f)
    test_f = np.asarray(test_f)
    train_y = np.asarray(train_y).reshape(-1)  # (N_train,)
    test_y = np.asarray(test_y).reshape(-1)  # (N_test,)
    if train_f.ndim != 2 or test_f.ndim != 2 or train_f.shape[1] != test_f.shape[1]:
        raise ValueError(
            f"linear_svm expects (N, D) train and test features with the same D, got {train_f.shape} "
            f"and {test_f.shape}"
        )
    if len(train_f) != len(train_y) or len(test_f) != len(test_y):
        raise ValueError(
            f"features and labels differ in length: train {len(train_f)} vs {len(train_y)}, "
            f"test {len(test_f)} vs {len(test_y)}"
        )
    if len(np.unique(train_y)) < 2:
        raise ValueError("linear_svm needs at least two classes in the training labels")
    return train_f, train_y, test_f, test_y


def _fit_predict(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, C: float,
                 solver: str) -> tuple[np.ndarray, float, float]:
    """Fit the SVM on (N_train, D) features and predict (N_test, D); returns predictions (N_test,) int64,
    fit seconds and predict seconds."""
    from sklearn.svm import SVC

    if solver == "svc":
        clf = SVC(C=float(C), kernel="linear")
        t0 = time.perf_counter()
        clf.fit(train_f, train_y)
        t1 = time.perf_counter()
        pred = clf.predict(test_f).astype(np.int64)
        t2 = time.perf_counter()
    else:
        clf = SVC(C=float(C), kernel="precomputed")
        t0 = time.perf_counter()
        x_train = np.ascontiguousarray(train_f, dtype=np.float64)  # (N_train, D)
        clf.fit(x_train @ x_train.T, train_y)  # Gram matrix (N_train, N_train)
        t1 = time.perf_counter()
        k_test = np.asarray(test_f, dtype=np.float64) @ x_train.T  # (N_test, N_train)
        pred = clf.predict(k_test).astype(np.int64)
        t2 = time.perf_counter()
    return pred, t1 - t0, t2 - t1


def linear_svm(
    train_f: np.ndarray,
    train_y: np.ndarray,
    test_f: np.ndarray,
    test_y: np.ndarray,
    C: float = 0.01,
    solver: str = "svc",
) -> dict[str, Any]:
    """Fit a linear SVM on frozen features and score it, as in CrossPoint's eval_ssl.ipynb.

    scikit-learn ``SVC(kernel="linear")`` on the raw (unnormalized) features, like the original.

    ``solver="svc_precomputed"`` solves the same libsvm problem (one-vs-one C-SVC, hinge loss, same C) from a
    precomputed linear Gram matrix ``K = X_train X_train^T`` (float64, one BLAS matmul) and predicts from
    ``K_test = X_test X_train^T``: the kernel values are the same up to floating-point rounding, so the
    predictions are the same up to near-ties, but libsvm no longer recomputes dot products one pair at a time.
    Memory: N_train^2 + N_test * N_train float64 (ModelNet40: 0.77 GB + 0.19 GB).

    Args:
        train_f: (N_train, D) features; train_y: (N_train,) integer labels.
        test_f: (N_test, D) features; test_y: (N_test,) integer labels.
        C: SVM regularization (this project's default 0.01; see eval_svm.py --help).
        solver: ``"svc"`` (the original: ``SVC(kernel="linear")``) or ``"svc_precomputed"`` (same problem,
            ``SVC(kernel="precomputed")`` on the linear Gram matrix; faster on ModelNet40-sized sets).

    Returns:
        dict with ``accuracy`` (overall, in [0, 1]), ``mean_class_accuracy`` (mean of per-class recall),
        ``per_class_accuracy`` {class: acc}, ``predictions`` (N_test,) np.int64, ``C``, ``solver``,
        ``fit_seconds`` (with ``svc_precomputed``: including the Gram matrix), ``predict_seconds`` (including
        ``K_test``), ``n_train``, ``n_test``.
    """
    if solver not in SVM_SOLVERS:
        raise ValueError(f"linear_svm: unknown solver {solver!r}; choose one of {SVM_SOLVERS}")
    train_f, train_y, test_f, test_y = _check_svm_inputs(train_f, train_y, test_f, test_y)
    pred, fit_seconds, predict_seconds = _fit_predict(train_f, train_y, test_f, C, solver)
    per_class = class_accuracies(test_y, pred)
    return {
        "accuracy": float(np.mean(pred == test_y)),
        "mean_class_accuracy": float(np.mean(list(per_class.values()))),
        "per_class_accuracy": per_class,
        "predictions": pred,
        "C": float(C),
        "solver": solver,
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
        "n_train": int(len(train_y)),
        "n_test": int(len(test_y)),
    }


def cross_validate_C(
    train_f: np.ndarray,
    train_y: np.ndarray,
    C_values: Sequence[float],
    folds: int = 5,
    seed: int = 0,
    solver: str = "svc",
) -> dict[str, Any]:
    """Choose the SVM's C by stratified k-fold cross-validation on the training split only.

    For each C, a linear SVM (:func:`linear_svm`) is fit on k-1 folds and scored on the held-out fold;
    the chosen C has the highest mean held-out accuracy (ties: the smallest C, i.e. the strongest
    regularisation). No test data is involved: score the test split once afterwards with the chosen C.

    Args:
        train_f: (N, D) training features; train_y: (N,) integer labels.
        C_values: the candidate C values.
        folds: k of the stratified k-fold split (scikit-learn ``StratifiedKFold``, shuffled with ``seed``).
        seed: seed of the fold assignment.
        solver: see :func:`linear_svm`.
    Returns:
        {"C", "cv_accuracy" {C: mean}, "fold_accuracies" {C: [k accuracies]}, "folds", "seed", "fold_sizes",
        "assignment_sha1" (sha1 of the per-sample fold ids, to compare fold assignments across runs)}.
    """
    import hashlib

    from sklearn.model_selection import StratifiedKFold

    train_f = np.asarray(train_f)
    train_y = np.asarray(train_y).reshape(-1)  # (N,)
    if folds < 2:
        raise ValueError(f"cross_validate_C needs at least 2 folds, got {folds}")
    if not C_values:
        raise ValueError("cross_validate_C needs at least one C value")
    classes, counts = np.unique(train_y, return_counts=True)
    if counts.min() < folds:
        small = classes[counts < folds]
        raise TooFewSamplesError(
            f"{folds}-fold cross-validation needs at least {folds} training samples per class; class(es) "
            f"{small.tolist()[:10]} have {int(counts.min())} at least. Lower the number of folds (--cv_folds) or "
            "use a fixed C.")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold_of = np.empty(len(train_y), dtype=np.int64)  # (N,) fold id of every sample
    splits = list(splitter.split(train_f, train_y))
    for i, (_, held) in enumerate(splits):
        fold_of[held] = i
    fold_acc: dict[float, list[float]] = {}
    for c in C_values:
        fold_acc[float(c)] = [
            linear_svm(train_f[fit], train_y[fit], train_f[held], train_y[held], C=c, solver=solver)["accuracy"]
            for fit, held in splits
        ]
    mean_acc = {c: float(np.mean(v)) for c, v in fold_acc.items()}
    best = max(sorted(mean_acc), key=lambda c: (mean_acc[c], -c))
    return {
        "C": best,
        "cv_accuracy": mean_acc,
        "fold_accuracies": fold_acc,
        "folds": folds,
        "seed": seed,
        "fold_sizes": [int(len(held)) for _, held in splits],
        "assignment_sha1": hashlib.sha1(fold_of.tobytes()).hexdigest(),
    }


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


def svm_on_dataset(encoder: LoadedEncoder, data: ClassificationData, kind: str, opts: ExtractOptions,
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
