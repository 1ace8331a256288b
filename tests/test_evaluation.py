"""util/evaluation.py: feature extraction, linear SVM, few-shot sampling; util/plotting.py figures."""

import numpy as np
import pytest
import torch
from torch import nn

from util.evaluation import FewShotDataError, extract_features, few_shot, linear_svm, sample_episode


class ToyEncoder(nn.Module):
    """(B, 3, P) -> (B, 8) with BatchNorm and Dropout, so train and eval mode differ."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 8, 1)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)
        self.seen_shapes: list[tuple[int, ...]] = []
        self.grad_enabled: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen_shapes.append(tuple(x.shape))
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.drop(self.bn(self.conv(x))).max(dim=2).values  # (B, 8, P) -> (B, 8)


def _toy_loader(n: int = 10, points: int = 16, batch_size: int = 4):
    g = torch.Generator().manual_seed(0)
    items = [(torch.randn(points, 3, generator=g), i % 3) for i in range(n)]
    return torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=False)


def _blobs(n_per_class: int, n_classes: int, dim: int, sep: float, seed: int):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    centers = rng.normal(size=(n_classes, dim)) * sep
    return (centers[y] + rng.normal(size=(len(y), dim))).astype(np.float32), y


def test_extract_features_shapes_eval_mode_no_grad():
    model = ToyEncoder().train()
    loader = _toy_loader()
    f1, y1 = extract_features(model, loader, "cpu", progress=False)
    assert f1.shape == (10, 8) and f1.dtype == np.float32
    assert y1.dtype == np.int64 and y1.tolist() == [i % 3 for i in range(10)]
    assert model.seen_shapes[0] == (4, 3, 16)  # (B, P, 3) batches are fed as (B, 3, P)
    assert not any(model.grad_enabled)
    assert model.training  # previous mode restored
    # eval mode: dropout off and BN running stats used -> deterministic, and equal to a manual eval pass
    f2, _ = extract_features(model, loader, "cpu", progress=True)
    np.testing.assert_array_equal(f1, f2)
    model.eval()
    with torch.no_grad():
        ref = torch.cat([model(p.transpose(1, 2)) for p, _ in loader]).numpy()
    np.testing.assert_allclose(f1, ref, rtol=1e-6, atol=1e-6)
    assert model.bn.num_batches_tracked.item() == 0  # running stats were never updated


def test_extract_features_float64_model():
    model = ToyEncoder().double()
    f, _ = extract_features(model, _toy_loader(), "cpu", progress=False)
    assert f.dtype == np.float32 and f.shape == (10, 8)


def test_linear_svm_separable_is_perfect():
    tr_f, tr_y = _blobs(30, 4, 16, sep=10.0, seed=0)
    te_f, te_y = _blobs(30, 4, 16, sep=10.0, seed=0)
    te_f = te_f + np.random.default_rng(1).normal(scale=0.1, size=te_f.shape).astype(np.float32)
    r = linear_svm(tr_f, tr_y, te_f, te_y, C=0.01)
    assert r["accuracy"] == 1.0 and r["mean_class_accuracy"] == 1.0
    assert r["predictions"].shape == (120,) and r["n_train"] == 120


def test_linear_svm_shuffled_labels_is_chance():
    n_classes = 5
    f, y = _blobs(120, n_classes, 16, sep=3.0, seed=0)
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


def test_sampler_never_overlaps_and_is_deterministic():
    y = np.repeat(np.arange(8), 12)  # 8 classes x 12 samples
    classes = np.unique(y)
    rng = np.random.default_rng(3)
    for _ in range(300):
        chosen, s, q = sample_episode(rng, classes, y, k_way=5, m_shot=5, n_query=7)
        assert len(set(chosen.tolist())) == 5
        assert len(s) == 25 and len(q) == 35
        assert not set(s.tolist()) & set(q.tolist())
        assert len(set(s.tolist())) == 25 and len(set(q.tolist())) == 35
        # class-major order: block i belongs to chosen[i]
        assert (y[s].reshape(5, 5) == chosen[:, None]).all()  # (k_way * m_shot,) -> (k_way, m_shot)
        assert (y[q].reshape(5, 7) == chosen[:, None]).all()  # (k_way * n_query,) -> (k_way, n_query)
    a = sample_episode(np.random.default_rng(7), classes, y, 5, 5, 7)
    b = sample_episode(np.random.default_rng(7), classes, y, 5, 5, 7)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_few_shot_deterministic_and_disjoint():
    f, y = _blobs(15, 6, 8, sep=2.0, seed=0)
    r1 = few_shot(f, y, k_way=3, m_shot=4, n_query=6, n_runs=20, seed=5, return_episodes=True)
    r2 = few_shot(f, y, k_way=3, m_shot=4, n_query=6, n_runs=20, seed=5)
    r3 = few_shot(f, y, k_way=3, m_shot=4, n_query=6, n_runs=20, seed=6)
    assert r1["accs"] == r2["accs"] and r1["mean"] == r2["mean"]
    assert r1["accs"] != r3["accs"]
    assert 0.0 <= r1["mean"] <= 1.0 and r1["std"] == pytest.approx(np.std(r1["accs"]))
    assert r1["query_split"] == "train"
    for _, s, q in r1["episodes"]:
        assert not set(s.tolist()) & set(q.tolist())


def test_few_shot_separable_and_query_split_test():
    tr_f, tr_y = _blobs(12, 5, 8, sep=20.0, seed=0)
    te_f, te_y = _blobs(6, 5, 8, sep=20.0, seed=0)
    r = few_shot(tr_f, tr_y, 5, 3, 6, n_runs=4, seed=0, query_f=te_f, query_y=te_y)
    assert r["mean"] == 1.0 and r["std"] == 0.0 and r["query_split"] == "test"


def test_few_shot_names_the_short_class():
    f, y = _blobs(10, 4, 8, sep=2.0, seed=0)
    keep = np.ones(len(y), bool)
    keep[np.flatnonzero(y == 2)[:4]] = False  # class 2 keeps 6 samples
    with pytest.raises(FewShotDataError, match=r"class 2 \('lamp'\) has 6 training samples"):
        few_shot(f[keep], y[keep], 3, 3, 4, 2, class_names=["a", "b", "lamp", "d"])
    with pytest.raises(FewShotDataError, match=r"class 3 has 2 test samples, needs n_query = 3"):
        few_shot(f, y, 3, 3, 3, 2, query_f=f[:8], query_y=np.array([0, 0, 0, 1, 1, 1, 3, 3]))
    with pytest.raises(FewShotDataError, match="only 4 classes"):
        few_shot(f, y, 5, 2, 2, 2)


def test_plots_write_pngs(tmp_path):
    from util.plotting import confusion_matrix, plot_confusion, plot_tsne

    f, y = _blobs(6, 3, 8, sep=5.0, seed=0)
    plot_tsne(f, y, ["a", "b", "c"], tmp_path / "t.png", title="toy")
    plot_confusion(y, (y + 1) % 3, None, tmp_path / "c.png")
    assert (tmp_path / "t.png").stat().st_size > 1000 and (tmp_path / "c.png").stat().st_size > 1000
    cm = confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]), 2)
    assert cm.tolist() == [[1, 1], [0, 1]]


def test_cv_choice_of_C_never_reads_the_test_split():
    """Choosing C by cross-validation depends on the training split only: shuffled test labels and noise as
    test features leave the choice and the CV accuracies unchanged."""
    from util.frozen_eval import SVMConfig, evaluate_svm

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
    from util.evaluation import FewShotDataError, cross_validate_C

    with pytest.raises(FewShotDataError, match="at least 5 training samples per class"):
        cross_validate_C(np.zeros((6, 2)), np.array([0, 0, 0, 1, 1, 1]), [1.0], folds=5)


def test_few_shot_reports_the_standard_error():
    rng = np.random.default_rng(0)
    feats, labels = rng.normal(size=(60, 4)), np.repeat(np.arange(3), 20)
    res = few_shot(feats, labels, k_way=2, m_shot=3, n_query=3, n_runs=6, seed=1)
    assert res["sem"] == pytest.approx(np.std(res["accs"], ddof=1) / np.sqrt(6))
    assert res["std"] == pytest.approx(np.std(res["accs"]))
