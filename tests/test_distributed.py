"""util/distributed.py: wrappers and the gradient-correct all-gather (2 gloo processes)."""


from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from util import distributed

import gloo_spawn  # tests/gloo_spawn.py


def test_unwrap_strips_wrappers():
    net = nn.Linear(2, 2)
    assert distributed.unwrap(nn.DataParallel(net)) is net
    assert distributed.unwrap(net) is net
    assert distributed.all_gather_with_grad(torch.ones(2)).shape == (2,)  # identity without a process group


def _gather_worker(rank: int, world_size: int, out_dir: str) -> None:
    torch.manual_seed(0)
    x_global = torch.randn(4 * world_size, 3, dtype=torch.float64)  # same on every rank
    weight = nn.Parameter(torch.randn(3, 5, dtype=torch.float64))
    x_local = x_global[rank * 4 : (rank + 1) * 4].clone().requires_grad_(True)  # (4, 3)
    z = distributed.all_gather_with_grad(x_local @ weight)  # (world_size * 4, 5)
    loss = torch.logsumexp(z @ z.t(), dim=1).mean()  # every rank computes the same loss
    loss.backward()
    # DDP averages parameter gradients over ranks.
    torch.distributed.all_reduce(weight.grad)
    weight.grad /= world_size
    torch.save({"wgrad": weight.grad, "xgrad": x_local.grad, "loss": loss.detach()},
               os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.mark.slow
def test_all_gather_with_grad_matches_full_batch(tmp_path):
    world_size = 2
    gloo_spawn.spawn(_gather_worker, world_size, str(tmp_path))

    torch.manual_seed(0)
    x_global = torch.randn(4 * world_size, 3, dtype=torch.float64).requires_grad_(True)
    weight = nn.Parameter(torch.randn(3, 5, dtype=torch.float64))
    z = x_global @ weight
    loss = torch.logsumexp(z @ z.t(), dim=1).mean()
    loss.backward()
    for rank in range(world_size):
        res = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(res["loss"], loss.detach())
        torch.testing.assert_close(res["wgrad"], weight.grad)
        # Each rank's input gradient is the sum over the ranks' (identical) loss copies.
        torch.testing.assert_close(res["xgrad"] / world_size, x_global.grad[rank * 4 : (rank + 1) * 4])
