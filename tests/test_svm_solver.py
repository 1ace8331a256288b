"""linear_svm(solver="svc_precomputed") solves the same problem as the paper's SVC(kernel="linear")."""

import inspect

import numpy as np
import pytest

from util.evaluation import SVM_SOLVERS, linear_svm


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
