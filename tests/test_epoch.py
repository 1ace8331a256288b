"""util/epoch.py: the epoch bookkeeping, through the scripts' loop (tests/epoch_loop.py)."""


from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from util.logger import Logger
from util.epoch import NonFiniteLossError

from epoch_loop import toy_problem, train_one_epoch  # tests/epoch_loop.py


def test_train_one_epoch_decreases_loss_and_logs(tmp_path):
    loader, model, opt = toy_problem()

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
    loader, model, opt = toy_problem()
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
