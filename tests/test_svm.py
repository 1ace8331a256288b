"""evaluation/svm.py: the linear SVM, its precomputed-Gram solver and the choice of C."""

import inspect

import numpy as np
import pytest

from conftest import gaussian_blobs
from evaluation.svm import SVM_SOLVERS, SVMConfig, TooFewSamplesError, cross_validate_C, evaluate_svm, linear_svm


def _overlapping_features(seed: int = 0) -> tuple[np.ndarray, ...]:
    """10 Gaussian classes in 64-d whose spread makes them overlap (accuracy well below 100 %).

    Returns train_f (600, 64) float32, train_y (600,), test_f (300, 64) float32, test_y (300,).
    """
    rng = np.random.default_rng(seed)
    n_classes, dim = 10, 64
    means = rng.normal(0.0, 0.35, size=(n_classes, dim))  # (10, 64)

    def draw(n_per_class: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(n_classes), n_per_class)  # (10 * n,)
        x = means[y] + rng.normal(0.0, 1.0, size=(len(y), dim))  # (10 * n, 64)
        perm = rng.permutation(len(y))
        return x[perm].astype(np.float32), y[perm]

    train_f, train_y = draw(60)
    test_f, test_y = draw(30)
    return train_f, train_y, test_f, test_y


@pytest.mark.parametrize("C", [0.01, 1.0])
def test_precomputed_matches_linear_svc(C):
    train_f, train_y, test_f, test_y = _overlapping_features()
    ref = linear_svm(train_f, train_y, test_f, test_y, C=C, solver="svc")
    pre = linear_svm(train_f, train_y, test_f, test_y, C=C, solver="svc_precomputed")
    assert ref["solver"] == "svc" and pre["solver"] == "svc_precomputed"
    assert 0.2 < ref["accuracy"] < 0.98, "the fixture should give an imperfect, non-trivial classifier"
    assert abs(100 * ref["accuracy"] - 100 * pre["accuracy"]) <= 0.2
    assert np.mean(ref["predictions"] == pre["predictions"]) >= 0.99
    assert pre["predictions"].dtype == np.int64 and pre["predictions"].shape == test_y.shape
    assert pre["n_train"] == 600 and pre["n_test"] == 300 and pre["C"] == C


def test_default_solver_is_the_papers_svc():
    default = inspect.signature(linear_svm).parameters["solver"].default
    assert default == "svc"
    assert SVM_SOLVERS == ("svc", "svc_precomputed")
    train_f, train_y, test_f, test_y = _overlapping_features(seed=1)
    assert linear_svm(train_f, train_y, test_f, test_y)["solver"] == "svc"


def test_unknown_solver_is_rejected():
    train_f, train_y, test_f, test_y = _overlapping_features()
    with pytest.raises(ValueError, match="unknown solver 'liblinear'"):
        linear_svm(train_f, train_y, test_f, test_y, solver="liblinear")


def test_eval_svm_cli_option_defaults_to_svc():
    from eval_svm import build_parser

    args = build_parser().parse_args(["--model_path", "random"])
    assert args.svm_solver == "svc"
    args = build_parser().parse_args(["--model_path", "random", "--svm_solver", "svc_precomputed"])
    assert args.svm_solver == "svc_precomputed"


def test_linear_svm_separable_is_perfect():
    tr_f, tr_y = gaussian_blobs(30, 4, 16, sep=10.0, seed=0)
    te_f, te_y = gaussian_blobs(30, 4, 16, sep=10.0, seed=0)
    te_f = te_f + np.random.default_rng(1).normal(scale=0.1, size=te_f.shape).astype(np.float32)
    r = linear_svm(tr_f, tr_y, te_f, te_y, C=0.01)
    assert r["accuracy"] == 1.0 and r["mean_class_accuracy"] == 1.0
    assert r["predictions"].shape == (120,) and r["n_train"] == 120


def test_linear_svm_shuffled_labels_is_chance():
    n_classes = 5
    f, y = gaussian_blobs(120, n_classes, 16, sep=3.0, seed=0)
    rng = np.random.default_rng(0)
    y_shuf = rng.permutation(y)
    idx = rng.permutation(len(y))
    tr, te = idx[:300], idx[300:]
    r = linear_svm(f[tr], y_shuf[tr], f[te], y_shuf[te], C=0.01)
    # 300 test samples: chance is 0.2, binomial std ~0.023; a real signal would be far above 0.32.
    assert abs(r["accuracy"] - 1.0 / n_classes) < 0.12
    # the same features with the true labels are well above chance (the test can fail)
    r_true = linear_svm(f[tr], y[tr], f[te], y[te], C=0.01)
    assert r_true["accuracy"] > 0.8


def test_linear_svm_per_class_accuracy():
    tr_f = np.array([[0.0], [0.1], [1.0], [1.1]], dtype=np.float32)
    tr_y = np.array([0, 0, 1, 1])
    te_f = np.array([[0.0], [1.0], [1.0], [1.0]], dtype=np.float32)
    te_y = np.array([0, 0, 1, 1])  # second test sample is mislabeled on purpose
    r = linear_svm(tr_f, tr_y, te_f, te_y, C=100.0)
    assert r["per_class_accuracy"] == {0: 0.5, 1: 1.0}
    assert r["accuracy"] == 0.75 and r["mean_class_accuracy"] == 0.75


def test_linear_svm_bad_shapes():
    with pytest.raises(ValueError, match="same D"):
        linear_svm(np.zeros((4, 3)), np.array([0, 1, 0, 1]), np.zeros((2, 2)), np.array([0, 1]))


def test_cv_choice_of_C_never_reads_the_test_split():
    """Choosing C by cross-validation depends on the training split only: shuffled test labels and noise as
    test features leave the choice and the CV accuracies unchanged."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 2.0
    train_y = np.repeat(np.arange(3), 12)
    test_y = np.repeat(np.arange(3), 6)
    feats = {"train_f": centers[train_y] + rng.normal(size=(36, 8)), "train_y": train_y,
             "test_f": centers[test_y] + rng.normal(size=(18, 8)), "test_y": test_y}
    svm = SVMConfig([0.001, 0.1, 10.0], "cv", cv_folds=3, seed=4)
    real = evaluate_svm(feats, svm, verbose=False)
    garbage = dict(feats, test_f=rng.normal(size=(18, 8)) * 100, test_y=rng.permutation(test_y))
    other = evaluate_svm(garbage, svm, verbose=False)
    assert real["selection"]["cv_accuracy"] == other["selection"]["cv_accuracy"]
    assert real["selection"]["chosen_C"] == other["selection"]["chosen_C"]
    assert real["selection"]["assignment_sha1"] == other["selection"]["assignment_sha1"]
    assert len(real["results"]) == 1 and real["best"]["C"] == real["selection"]["chosen_C"]


def test_cv_needs_enough_samples_per_class():
    with pytest.raises(TooFewSamplesError, match="at least 5 training samples per class"):
        cross_validate_C(np.zeros((6, 2)), np.array([0, 0, 0, 1, 1, 1]), [1.0], folds=5)
