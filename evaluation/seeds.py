"""Spread of results over seeds: mean, standard deviation and seed-paired differences with a 95% interval.

With n seeds, ``summarize`` gives the sample standard deviation (ddof=1) and ``paired_difference`` the mean
of the per-seed differences a_s - b_s with Student's t interval, mean ± t_{0.975, n-1} * sd / sqrt(n) (a
paired t-interval: both methods share each seed's data, split and evaluation episodes, so the seed-to-seed
noise they share cancels). The interval excludes 0 only when the difference is larger than that noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["summarize", "paired_difference", "CONFIDENCE"]

CONFIDENCE = 0.95


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """{"values", "n", "mean", "std" (ddof=1; None for one value), "min", "max"} of per-seed values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("summarize needs at least one value")
    return {"values": v.tolist(), "n": int(v.size), "mean": float(v.mean()),
            "std": float(v.std(ddof=1)) if v.size > 1 else None, "min": float(v.min()), "max": float(v.max())}


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Mean of the per-seed differences ``a - b`` with a 95% paired t-interval.

    Returns:
        {"method", "n", "differences", "mean", "std", "ci_low", "ci_high", "excludes_zero"}; with one seed
        the interval is None.
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired_difference needs two equal-length, non-empty series, got {a.shape} and {b.shape}")
    d = a - b
    out: dict[str, Any] = {"method": f"paired t-interval over seeds ({int(CONFIDENCE * 100)}%)", "n": int(d.size),
                           "differences": d.tolist(), "mean": float(d.mean()), "std": None, "ci_low": None,
                           "ci_high": None, "excludes_zero": None}
    if d.size > 1:
        sd = float(d.std(ddof=1))
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, d.size - 1)) * sd / math.sqrt(d.size)
        out.update(std=sd, ci_low=float(d.mean() - half), ci_high=float(d.mean() + half))
        out["excludes_zero"] = bool(out["ci_low"] > 0 or out["ci_high"] < 0)
    return out
