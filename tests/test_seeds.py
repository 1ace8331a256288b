"""evaluation/seeds.py: summaries over seeds and the seed-paired t-interval."""

import pytest

from evaluation.seeds import paired_difference, summarize


def test_paired_interval_and_summary():
    d = paired_difference([0.9, 0.8, 0.85, 0.95, 0.9], [0.8, 0.75, 0.8, 0.85, 0.82])
    assert d["mean"] == pytest.approx(0.076) and d["ci_low"] > 0 and d["excludes_zero"]
    # t_{0.975,4} = 2.776: the half-width of the interval
    assert d["ci_high"] - d["mean"] == pytest.approx(2.7764451 * d["std"] / 5 ** 0.5, rel=1e-6)
    same = paired_difference([0.5, 0.6, 0.7], [0.6, 0.5, 0.7])
    assert not same["excludes_zero"]
    s = summarize([0.1, 0.2, 0.3])
    assert s["mean"] == pytest.approx(0.2) and s["std"] == pytest.approx(0.1)
    assert summarize([0.4])["std"] is None and paired_difference([0.4], [0.3])["ci_low"] is None
