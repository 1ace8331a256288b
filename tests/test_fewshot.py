"""evaluation/fewshot.py: episode sampling and N-way K-shot linear SVMs."""

import numpy as np
import pytest

from conftest import gaussian_blobs
from evaluation.fewshot import FewShotDataError, few_shot, sample_episode


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
    f, y = gaussian_blobs(15, 6, 8, sep=2.0, seed=0)
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
    tr_f, tr_y = gaussian_blobs(12, 5, 8, sep=20.0, seed=0)
    te_f, te_y = gaussian_blobs(6, 5, 8, sep=20.0, seed=0)
    r = few_shot(tr_f, tr_y, 5, 3, 6, n_runs=4, seed=0, query_f=te_f, query_y=te_y)
    assert r["mean"] == 1.0 and r["std"] == 0.0 and r["query_split"] == "test"


def test_few_shot_names_the_short_class():
    f, y = gaussian_blobs(10, 4, 8, sep=2.0, seed=0)
    keep = np.ones(len(y), bool)
    keep[np.flatnonzero(y == 2)[:4]] = False  # class 2 keeps 6 samples
    with pytest.raises(FewShotDataError, match=r"class 2 \('lamp'\) has 6 training samples"):
        few_shot(f[keep], y[keep], 3, 3, 4, 2, class_names=["a", "b", "lamp", "d"])
    with pytest.raises(FewShotDataError, match=r"class 3 has 2 test samples, needs n_query = 3"):
        few_shot(f, y, 3, 3, 3, 2, query_f=f[:8], query_y=np.array([0, 0, 0, 1, 1, 1, 3, 3]))
    with pytest.raises(FewShotDataError, match="only 4 classes"):
        few_shot(f, y, 5, 2, 2, 2)


def test_few_shot_reports_the_standard_error():
    rng = np.random.default_rng(0)
    feats, labels = rng.normal(size=(60, 4)), np.repeat(np.arange(3), 20)
    res = few_shot(feats, labels, k_way=2, m_shot=3, n_query=3, n_runs=6, seed=1)
    assert res["sem"] == pytest.approx(np.std(res["accs"], ddof=1) / np.sqrt(6))
    assert res["std"] == pytest.approx(np.std(res["accs"]))
