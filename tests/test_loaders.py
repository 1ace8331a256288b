"""util/loaders.py: the seeded stratified split."""


from __future__ import annotations


import numpy as np

from util.loaders import stratified_split



def test_stratified_split():
    labels = np.repeat(np.arange(4), [10, 5, 2, 1])
    train, val = stratified_split(labels, 0.2, seed=0)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(labels)
    assert [int((labels[val] == c).sum()) for c in range(4)] == [2, 1, 1, 0]
    again = stratified_split(labels, 0.2, seed=0)
    assert np.array_equal(val, again[1])
