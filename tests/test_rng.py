"""util/rng.py: RNG state round trip."""


from __future__ import annotations

import random

import numpy as np
import torch

from util.rng import get_rng_state, make_generator, seed_everything, set_rng_state



def test_rng_state_round_trip_weights_only(tmp_path):
    seed_everything(123)
    g = make_generator(7)
    state = get_rng_state({"loader": g})
    path = tmp_path / "rng.pt"
    torch.save(state, path)
    expected = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=g))

    seed_everything(999)
    g2 = make_generator(0)
    set_rng_state(torch.load(path, weights_only=True), {"loader": g2})
    got = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=g2))
    assert torch.equal(expected[0], got[0])
    assert np.array_equal(expected[1], got[1])
    assert expected[2] == got[2]
    assert torch.equal(expected[3], got[3])
