"""N-way K-shot classification with a linear SVM on frozen features (eval_fewshot.py, CrossPoint Tables 3, 4).

Episodes come from a seeded numpy Generator (:func:`sample_episode`); every class is checked up front, and a
short class is named in a :class:`FewShotDataError`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from util.fileio import InputFileError

__all__ = ["FewShotDataError", "few_shot", "sample_episode"]


class FewShotDataError(InputFileError):
    """A dataset cannot supply the requested few-shot episodes (names the class that is short)."""


def _class_label(c: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and 0 <= c < len(class_names):
        return f"{c} ({class_names[c]!r})"
    return str(c)


def _eligible_classes(
    support_y: np.ndarray,
    query_y: np.ndarray | None,
    k_way: int,
    m_shot: int,
    n_query: int,
    class_names: Sequence[str] | None,
) -> np.ndarray:
    """Check every class has enough samples for an episode; return the sorted class ids (C,)."""
    classes = np.unique(support_y)
    short: list[str] = []
    for c in classes:
        n_sup = int(np.sum(support_y == c))
        if query_y is None:
            if n_sup < m_shot + n_query:
                short.append(
                    f"class {_class_label(int(c), class_names)} has {n_sup} training samples, needs "
                    f"m_shot + n_query = {m_shot} + {n_query} = {m_shot + n_query}"
                )
        else:
            n_q = int(np.sum(query_y == c))
            if n_sup < m_shot:
                short.append(
                    f"class {_class_label(int(c), class_names)} has {n_sup} training samples, needs "
                    f"m_shot = {m_shot}"
                )
            if n_q < n_query:
                short.append(
                    f"class {_class_label(int(c), class_names)} has {n_q} test samples, needs "
                    f"n_query = {n_query}"
                )
    if short:
        more = f"; ... and {len(short) - 5} more" if len(short) > 5 else ""
        raise FewShotDataError(
            "not enough samples for the few-shot episodes: " + "; ".join(short[:5]) + more
            + ". Lower --m_shot / --n_query or use a larger dataset."
        )
    if len(classes) < k_way:
        raise FewShotDataError(
            f"k_way={k_way} classes requested but the dataset has only {len(classes)} classes "
            f"({', '.join(_class_label(int(c), class_names) for c in classes)}). Lower --k_way."
        )
    return classes


def sample_episode(
    rng: np.random.Generator,
    classes: np.ndarray,
    support_y: np.ndarray,
    k_way: int,
    m_shot: int,
    n_query: int,
    query_y: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one N-way K-shot episode.

    Classes are drawn without replacement; per class, ``m_shot`` support and ``n_query`` query samples are
    drawn without replacement. With ``query_y=None`` both come from the same pool (``support_y``) and are
    disjoint (one permutation, split); otherwise queries are indices into ``query_y``.

    Args:
        rng: numpy Generator (the only source of randomness).
        classes: (C,) eligible class ids.
        support_y: (N_s,) labels of the support pool; query_y: (N_q,) labels of a separate query pool or None.

    Returns:
        episode_classes (k_way,), support_idx (k_way * m_shot,), query_idx (k_way * n_query,), class-major.
    """
    chosen = rng.choice(classes, size=k_way, replace=False)
    support_idx: list[np.ndarray] = []
    query_idx: list[np.ndarray] = []
    for c in chosen:
        pool = np.flatnonzero(support_y == c)
        if query_y is None:
            perm = rng.permutation(pool)
            support_idx.append(perm[:m_shot])
            query_idx.append(perm[m_shot:m_shot + n_query])
        else:
            support_idx.append(rng.choice(pool, size=m_shot, replace=False))
            query_idx.append(rng.choice(np.flatnonzero(query_y == c), size=n_query, replace=False))
    return chosen, np.concatenate(support_idx), np.concatenate(query_idx)


def _check_few_shot_inputs(
    train_f: np.ndarray, train_y: np.ndarray, query_f: np.ndarray | None, query_y: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The support pool and the optional query pool as numpy, labels flattened; ValueError when they do not fit."""
    train_f = np.asarray(train_f)
    train_y = np.asarray(train_y).reshape(-1)  # (N,)
    if (query_f is None) != (query_y is None):
        raise ValueError("few_shot: pass both query_f and query_y (stricter protocol) or neither")
    if query_y is not None:
        query_f = np.asarray(query_f)
        query_y = np.asarray(query_y).reshape(-1)  # (M,)
        if len(query_f) != len(query_y):
            raise ValueError(f"few_shot: query_f has {len(query_f)} rows but query_y {len(query_y)}")
    if len(train_f) != len(train_y):
        raise ValueError(f"few_shot: train_f has {len(train_f)} rows but train_y {len(train_y)}")
    return train_f, train_y, query_f, query_y


def _episode_accuracy(s_feat: np.ndarray, q_feat: np.ndarray, k_way: int, m_shot: int, n_query: int, C: float,
                     standardize: bool) -> float:
    """Accuracy of a linear SVM fit on one episode's support set and scored on its queries.

    Args:
        s_feat: (k_way * m_shot, D) support features, class-major; q_feat: (k_way * n_query, D) query features.
        C: SVM regularization; standardize: StandardScaler fit on the support features.
    """
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    # Labels are re-indexed 0..k_way-1 in class-major order, like the original.
    s_lab = np.repeat(np.arange(k_way), m_shot)  # (k_way * m_shot,)
    q_lab = np.repeat(np.arange(k_way), n_query)  # (k_way * n_query,)
    if standardize:
        scaler = StandardScaler().fit(s_feat)
        s_feat, q_feat = scaler.transform(s_feat), scaler.transform(q_feat)
    clf = SVC(C=float(C), kernel="linear").fit(s_feat, s_lab)
    return float(np.mean(clf.predict(q_feat) == q_lab))


def few_shot(
    train_f: np.ndarray,
    train_y: np.ndarray,
    k_way: int = 5,
    m_shot: int = 10,
    n_query: int = 20,
    n_runs: int = 10,
    seed: int = 0,
    query_f: np.ndarray | None = None,
    query_y: np.ndarray | None = None,
    C: float = 1.0,
    standardize: bool = True,
    class_names: Sequence[str] | None = None,
    return_episodes: bool = False,
) -> dict[str, Any]:
    """N-way K-shot classification with a linear SVM on frozen features, mean and std over runs.

    Default protocol (as CrossPoint's eval_fewshot.py): support AND query are drawn from the training
    split (disjoint), features are standardized with a StandardScaler fit on the support set, and a
    ``SVC(kernel="linear")`` with scikit-learn's default C=1.0 is fit per episode. Passing
    ``query_f``/``query_y`` (the test split) gives the stricter protocol: support from train, query from test.

    Args:
        train_f: (N, D) features of the support pool; train_y: (N,) integer labels.
        k_way, m_shot, n_query: classes per episode, support samples per class, query samples per class.
        n_runs: number of episodes; seed: seed of the numpy Generator (same seed, same episodes).
        query_f: (M, D) features of a separate query pool or None; query_y: (M,) labels.
        C: SVM regularization (original: sklearn default 1.0).
        standardize: StandardScaler fit on the support features (original: yes).
        class_names: optional names used in error messages.
        return_episodes: also return the sampled (classes, support_idx, query_idx) per run.

    Returns:
        dict(mean=..., std=..., sem=..., accs=[...]) with accuracies in [0, 1]: std is numpy's population std,
        as in the original; sem is the standard error of the mean, std(ddof=1) / sqrt(n_runs) (None for one
        run); plus the protocol settings; ``episodes`` when requested.
    """
    train_f, train_y, query_f, query_y = _check_few_shot_inputs(train_f, train_y, query_f, query_y)
    if min(k_way, m_shot, n_query, n_runs) < 1 or k_way < 2:
        raise ValueError(
            f"few_shot needs k_way >= 2 and m_shot, n_query, n_runs >= 1, got k_way={k_way}, "
            f"m_shot={m_shot}, n_query={n_query}, n_runs={n_runs}"
        )
    # Differs from the original: every class is checked up front (the original's random.sample failed only
    # when a short class happened to be drawn), and episodes come from a seeded numpy Generator (the original
    # used the unseeded `random` module, so its runs were not reproducible).
    classes = _eligible_classes(train_y, query_y, k_way, m_shot, n_query, class_names)
    q_f = train_f if query_f is None else query_f
    rng = np.random.default_rng(seed)
    accs: list[float] = []
    episodes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for _ in range(n_runs):
        chosen, s_idx, q_idx = sample_episode(rng, classes, train_y, k_way, m_shot, n_query, query_y)
        accs.append(_episode_accuracy(train_f[s_idx], q_f[q_idx], k_way, m_shot, n_query, C, standardize))
        if return_episodes:
            episodes.append((chosen, s_idx, q_idx))
    out: dict[str, Any] = {
        "mean": float(np.mean(accs)),
        "std": float(np.std(accs)),
        # Standard error of the mean over the runs (sample std, ddof=1), next to the original's population std.
        "sem": float(np.std(accs, ddof=1) / np.sqrt(len(accs))) if len(accs) > 1 else None,
        "accs": accs,
        "k_way": k_way,
        "m_shot": m_shot,
        "n_query": n_query,
        "n_runs": n_runs,
        "seed": seed,
        "C": float(C),
        "standardize": standardize,
        "query_split": "train" if query_y is None else "test",
    }
    if return_episodes:
        out["episodes"] = episodes
    return out
