"""Tests for util/training.py, util/distributed.py and util/logger.py (generic infrastructure)."""

from __future__ import annotations

import contextlib
import json
import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from util import distributed
from util.logger import Logger
from util.training import (
    NonFiniteLossError,
    autocast_context,
    get_rng_state,
    load_training_state,
    make_generator,
    make_grad_scaler,
    resolve_device,
    save_training_state,
    seed_everything,
    set_rng_state,
    stratified_split,
)

import gloo_spawn  # tests/gloo_spawn.py
from epoch_loop import train_one_epoch  # tests/epoch_loop.py


def test_autocast_runs_on_cpu():
    """--amp bf16/fp16 autocast on the CPU (fp16 with a CPU GradScaler); fp32 is a nullcontext."""
    cpu = torch.device("cpu")
    assert isinstance(autocast_context(cpu, "none"), contextlib.nullcontext)
    assert make_grad_scaler(cpu, "none") is None and make_grad_scaler(cpu, "bf16") is None
    for amp, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        with autocast_context(cpu, amp):
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == dtype
    assert isinstance(make_grad_scaler(cpu, "fp16"), torch.amp.GradScaler)
    with pytest.raises(ValueError, match="amp must be one of"):
        autocast_context(cpu, "fp8")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(SystemExit, match="--device cuda: CUDA is not available"):
            resolve_device("cuda")


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


def _toy_problem(seed: int = 0):
    torch.manual_seed(seed)
    x = torch.randn(64, 4, dtype=torch.float64)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]], dtype=torch.float64)  # (64, 1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    model = nn.Linear(4, 1).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    return loader, model, opt


def test_train_one_epoch_decreases_loss_and_logs(tmp_path):
    loader, model, opt = _toy_problem()

    def step_fn(batch):
        xb, yb = batch
        err = (model(xb) - yb).pow(2)
        return err.mean(), {"mae": err.sqrt().mean()}

    logger = Logger(tmp_path, enabled=True)
    first = train_one_epoch(step_fn, loader, opt, torch.device("cpu"), 0, logger, log_every=4, progress=False)
    for epoch in range(1, 4):
        last = train_one_epoch(step_fn, loader, opt, torch.device("cpu"), epoch, logger, progress=False)
    logger.close()
    assert last["loss"] < 0.5 * first["loss"]
    assert set(first) >= {"loss", "mae", "lr", "samples_per_s", "steps", "time_s"}
    assert first["steps"] == 8 and first["samples_per_s"] > 0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records[:2]] == [4, 8]
    assert "train/loss" in records[0] and "train/lr" in records[0]

    capped = train_one_epoch(step_fn, loader, opt, torch.device("cpu"), 4, None, max_steps=3, progress=False)
    assert capped["steps"] == 3


def test_train_one_epoch_stops_on_nan_before_step():
    loader, model, opt = _toy_problem()
    snapshots = []

    def step_fn(batch):
        xb, yb = batch
        loss = (model(xb) - yb).pow(2).mean()
        snapshots.append([p.detach().clone() for p in model.parameters()])
        if len(snapshots) == 3:
            loss = loss * float("nan")
        return loss, {"part": loss.detach()}

    # log_every=1 reads the loss before every step's update (larger values find it later: see
    # tests/test_gpu_contracts.py).
    with pytest.raises(NonFiniteLossError, match="epoch 5, step 2") as info:
        train_one_epoch(step_fn, loader, opt, torch.device("cpu"), 5, None, log_every=1, progress=False)
    assert info.value.epoch == 5 and info.value.step == 2 and info.value.detected_step == 2
    assert np.isnan(info.value.metrics["loss"]) and "part" in info.value.metrics
    # The bad step was not applied: parameters equal those seen at the start of step 2.
    for p, s in zip(model.parameters(), snapshots[2]):
        assert torch.equal(p.detach(), s)


def test_training_state_round_trip(tmp_path):
    pytest.importorskip("util.checkpoint")
    loader, model, opt = _toy_problem()
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)

    def step_fn(batch):
        xb, yb = batch
        return (model(xb) - yb).pow(2).mean(), {}

    train_one_epoch(step_fn, loader, opt, torch.device("cpu"), 0, None, progress=False)
    sched.step()
    g = make_generator(3)
    path = tmp_path / "state.pt"
    save_training_state(
        path, models={"net": model}, optimizer=opt, scheduler=sched, epoch=0,
        config={"lr": 0.05, "name": "toy"}, rng=get_rng_state({"g": g}), extra={"best": 0.5, "history": [1.0]},
    )
    torch.load(path, weights_only=True)  # must not need pickle

    _, model2, opt2 = _toy_problem(seed=1)
    sched2 = torch.optim.lr_scheduler.CosineAnnealingLR(opt2, T_max=10)
    state = load_training_state(path, models={"net": model2}, optimizer=opt2, scheduler=sched2)
    assert state["epoch"] == 0 and state["config"]["name"] == "toy" and state["extra"]["best"] == 0.5
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert sched2.last_epoch == sched.last_epoch
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    with pytest.raises(ValueError, match="not a training-state file"):
        torch.save(model.state_dict(), tmp_path / "w.pth")
        load_training_state(tmp_path / "w.pth", models={"net": model2})


def test_unwrap_strips_wrappers():
    net = nn.Linear(2, 2)
    assert distributed.unwrap(nn.DataParallel(net)) is net
    assert distributed.unwrap(net) is net
    assert distributed.all_gather_with_grad(torch.ones(2)).shape == (2,)  # identity without a process group


def test_logger_disabled_writes_nothing(tmp_path):
    log = Logger(tmp_path / "x", enabled=False)
    log.info("hello")
    log.log({"a": 1.0}, step=0)
    log.close()
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="wandb_mode"):
        Logger(tmp_path, wandb_mode="maybe")


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


def test_stratified_split():
    labels = np.repeat(np.arange(4), [10, 5, 2, 1])
    train, val = stratified_split(labels, 0.2, seed=0)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(labels)
    assert [int((labels[val] == c).sum()) for c in range(4)] == [2, 1, 1, 0]
    again = stratified_split(labels, 0.2, seed=0)
    assert np.array_equal(val, again[1])
