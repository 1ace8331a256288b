"""Issue 19, item 8: no host synchronisation in every training step (CPU tests of a GPU contract).

On a GPU every ``.item()``, ``bool(tensor)``, ``.tolist()``, ``.cpu()`` and every collective waits for the
device to finish its queued work, so one per step stalls the pipeline. These tests patch those calls with
counting wrappers and run the real epoch loop (``util.training.train_one_epoch``): the host may read the
device once per ``--print_freq`` steps (and at the epoch end), never per step. ``--gather_negatives`` may
compare the gathered shapes across ranks once per run. The probe's feature loaders use workers and pinned
memory on CUDA.

The contract of the delayed non-finite-loss stop: a NaN at step s is found at the next sync point d (the
first step >= s with (d + 1) % print_freq == 0, or the epoch's last step); the steps s..d-1 DO run (their
optimizer steps are taken), step d's update is not, nothing after d runs, and the error names s, d and
the values at s. ``util.run.Run.guard`` then writes no weights for that epoch (see
tests/test_train_crossmodal.py::test_nan_loss_stops_and_keeps_last_good_checkpoint, where the NaN of step 0
is found at step 1).
"""

from __future__ import annotations

import json
import math
import os
import socket
from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Dataset

import train_crossmodal
from models import build_image_encoder, build_point_encoder
from util import distributed
from util.logger import Logger
from util.training import NonFiniteLossError, train_one_epoch

pytestmark = pytest.mark.usefixtures("one_thread")

_HS_TENSOR_SYNCS = ("item", "__bool__", "__float__", "__int__", "tolist", "cpu", "numpy")
_HS_COLLECTIVES = ("all_reduce", "all_gather", "all_gather_object", "broadcast", "broadcast_object_list", "barrier")


class _HsCounter:
    """Counts host synchronisations (tensor reads and collectives) and the step during which each happened.

    Only the outermost call counts (the ``.item()`` inside ``all_gather_object`` belongs to that one
    collective). ``optimizer.step`` is not counted: Adam reads its step counter with ``.item()``, but that counter lives on
    the CPU (``capturable=False``, torch's default), so on a GPU it is no device synchronisation.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.at_step: Counter[int] = Counter()
        self.step = -1
        self.depth = 0  # > 0 inside a counted call or optimizer.step

    def wrap(self, owner: Any, name: str) -> None:
        original = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            if not self.depth:
                self.counts[name] += 1
                self.at_step[self.step] += 1
            self.depth += 1
            try:
                return original(*args, **kwargs)
            finally:
                self.depth -= 1

        setattr(owner, name, counted)
        self._restore.append((owner, name, original))

    def install(self) -> None:
        self._restore: list[tuple[Any, str, Any]] = []
        for name in _HS_TENSOR_SYNCS:
            self.wrap(torch.Tensor, name)
        for name in _HS_COLLECTIVES:
            self.wrap(dist, name)

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._restore):
            setattr(owner, name, original)

    def watch(self, step_fn: Any, optimizer: torch.optim.Optimizer) -> Any:
        """``step_fn`` that records the current step; ``optimizer.step`` excluded from the counts. Counting
        starts afresh here (after the models were built)."""
        self.counts.clear()
        self.at_step.clear()
        real_step = optimizer.step

        def step_uncounted(*args: Any, **kwargs: Any) -> Any:
            self.depth += 1
            try:
                return real_step(*args, **kwargs)
            finally:
                self.depth -= 1

        optimizer.step = step_uncounted  # type: ignore[method-assign]

        def watched(batch: Any) -> Any:
            self.step += 1
            return step_fn(batch)

        return watched

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@pytest.fixture
def _hs_counter():
    counter = _HsCounter()
    counter.install()
    try:
        yield counter
    finally:
        counter.uninstall()


def _hs_toy(steps: int, seed: int = 0) -> tuple[list, nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    x = torch.randn(steps, 8, 4)  # (steps, B, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])  # (steps, B, 1)
    model = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))
    return list(zip(x, y)), model, torch.optim.Adam(model.parameters(), lr=1e-2)


def _hs_toy_step(model: nn.Module):
    def step_fn(batch):
        xb, yb = batch
        err = model(xb) - yb  # (B, 1)
        return err.pow(2).mean(), {"mae": err.abs().mean().detach(), "host_float": 0.5}

    return step_fn


@pytest.mark.parametrize("print_freq", [3, 0])
def test_hostsync_one_read_per_print_freq_steps(_hs_counter, tmp_path, print_freq):
    n = 3 * (print_freq or 2)
    batches, model, opt = _hs_toy(n)
    logger = Logger(tmp_path, enabled=True)
    step_fn = _hs_counter.watch(_hs_toy_step(model), opt)
    out = train_one_epoch(step_fn, batches, opt, torch.device("cpu"), 0, logger, log_every=print_freq, progress=True)
    logger.close()
    _hs_counter.uninstall()
    # At most one read per window of print_freq steps, plus one at the epoch end (print_freq 0: the end only).
    allowed = (n // print_freq if print_freq else 0) + 1
    assert 0 < _hs_counter.total <= allowed, dict(_hs_counter.counts)
    assert all(c <= 1 for c in _hs_counter.at_step.values()), dict(_hs_counter.at_step)
    if print_freq:
        assert set(_hs_counter.at_step) <= {print_freq - 1, 2 * print_freq - 1, 3 * print_freq - 1}
        records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records] == [print_freq, 2 * print_freq, 3 * print_freq]
    else:
        assert set(_hs_counter.at_step) == {n - 1}
    assert out["steps"] == n and math.isfinite(out["loss"]) and out["host_float"] == pytest.approx(0.5)


def test_hostsync_means_equal_the_per_step_values():
    batches, model, opt = _hs_toy(6)
    seen: list[list[float]] = []
    inner = _hs_toy_step(model)

    def step_fn(batch):
        loss, metrics = inner(batch)
        seen.append([loss.item(), metrics["mae"].item()])
        return loss, metrics

    out = train_one_epoch(step_fn, batches, opt, torch.device("cpu"), 0, None, log_every=4, progress=False)
    assert out["loss"] == pytest.approx(np.mean([s[0] for s in seen]), rel=1e-12)
    assert out["mae"] == pytest.approx(np.mean([s[1] for s in seen]), rel=1e-12)


def test_hostsync_crosspoint_step(_hs_counter):
    # The real CrossPoint step (point and image branches, IMID + CMID), counted with the `plain` EdgeConv: the
    # fast EdgeConv's own syncs are removed separately (tests of models/edgeconv.py), this counts the loop.
    torch.manual_seed(0)
    point = build_point_encoder("dgcnn", k=4, emb_dims=32, edgeconv="plain")
    image = build_image_encoder("resnet18")
    params = [*point.parameters(), *image.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    step = train_crossmodal.CrossPointStep(train_crossmodal.ProjectedEncoder(point),
                                           train_crossmodal.ProjectedEncoder(image), torch.device("cpu"), "none",
                                           0.1, gather_negatives=False, channels_last=False)
    batches = [(torch.randn(4, 32, 3), torch.randn(4, 32, 3), torch.randn(4, 3, 32, 32)) for _ in range(6)]
    out = train_one_epoch(_hs_counter.watch(step, opt), batches, opt, torch.device("cpu"), 0, None, log_every=2,
                          progress=False)
    assert 0 < _hs_counter.total <= 6 // 2 + 1, dict(_hs_counter.counts)
    assert set(_hs_counter.at_step) <= {1, 3, 5}, dict(_hs_counter.at_step)
    assert out["steps"] == 6 and {"imid", "cmid"} <= set(out)


def test_hostsync_nan_found_at_the_next_sync_point():
    # The NaN is put in a step metric (stopped like a NaN loss) so the weights stay finite and the updates
    # taken after it can be compared exactly.
    batches, model, opt = _hs_toy(12)
    inner = _hs_toy_step(model)
    seen: list[list[torch.Tensor]] = []
    updates = {"n": 0}
    real_step = opt.step

    def counted_step(*args, **kwargs):
        updates["n"] += 1
        return real_step(*args, **kwargs)

    opt.step = counted_step

    def step_fn(batch):
        seen.append([p.detach().clone() for p in model.parameters()])
        loss, metrics = inner(batch)
        if len(seen) == 6:  # step 5
            metrics = {**metrics, "mae": metrics["mae"] * math.nan}
        return loss, metrics

    with pytest.raises(NonFiniteLossError) as info:
        train_one_epoch(step_fn, batches, opt, torch.device("cpu"), 3, None, log_every=4, progress=False)
    err = info.value
    assert (err.epoch, err.step, err.detected_step) == (3, 5, 7)
    assert math.isnan(err.metrics["mae"]) and math.isfinite(err.metrics["loss"]) and err.metrics["host_float"] == 0.5
    assert "Non-finite loss at epoch 3, step 5" in str(err) and "steps 5 to 6 were taken" in str(err)
    assert "--print_freq" in str(err)
    # Steps 0..6 were applied (5 and 6 after the NaN), step 7 was not, and nothing after it ran.
    assert updates["n"] == 7 and len(seen) == 8
    assert not all(torch.equal(a, b) for a, b in zip(seen[5], seen[7]))
    for p, before in zip(model.parameters(), seen[7]):
        assert torch.equal(p.detach(), before)


def test_hostsync_nan_at_a_sync_point_skips_its_step():
    batches, model, opt = _hs_toy(6)
    inner = _hs_toy_step(model)

    def step_fn(batch):
        step_fn.calls += 1
        loss, metrics = inner(batch)
        return (loss * math.inf, metrics) if step_fn.calls == 6 else (loss, metrics)  # inf at the last step

    step_fn.calls = 0
    with pytest.raises(NonFiniteLossError, match="its optimizer step was skipped") as info:
        train_one_epoch(step_fn, batches, opt, torch.device("cpu"), 0, None, log_every=0, progress=False)
    assert (info.value.step, info.value.detected_step) == (5, 5)


class _HsProbeSet(Dataset):
    labels = np.array([0, 0, 1, 1, 2, 2])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.zeros(8, 3), int(self.labels[i])


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_hostsync_probe_loaders_use_workers_and_pinned_memory(device):
    probe = train_crossmodal.SVMProbe(_HsProbeSet(), _HsProbeSet(), "val", 0.3, 0.1, 2, 0, torch.device(device), 2)
    for loader in (probe.train_loader, probe.test_loader):
        assert loader.num_workers == 2
        assert loader.pin_memory == (device == "cuda")


# -- 2 processes (gloo): shapes checked once per run, one collective per sync point, the same NaN decision --


def _hs_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hs_ddp_step(device: torch.device, points: int, size: int) -> tuple[Any, torch.optim.Optimizer]:
    torch.manual_seed(0)
    point = nn.Sequential(nn.Flatten(), nn.Linear(3 * points, 8))  # (2B, 3, N) -> (2B, 8)
    image = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, 8))  # (B, 3, S, S) -> (B, 8)
    opt = torch.optim.SGD([*point.parameters(), *image.parameters()], lr=0.1)
    step = train_crossmodal.CrossPointStep(distributed.wrap_ddp(point, device), distributed.wrap_ddp(image, device),
                                           device, "none", 0.1, gather_negatives=True, channels_last=False)
    return step, opt


def _hs_ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    counter = _HsCounter()
    try:
        device = torch.device("cpu")
        step, opt = _hs_ddp_step(device, points=16, size=4)
        g = torch.Generator().manual_seed(rank)
        batches = [(torch.randn(2, 16, 3, generator=g), torch.randn(2, 16, 3, generator=g),
                    torch.randn(2, 3, 4, 4, generator=g)) for _ in range(6)]
        counter.install()
        step_fn = counter.watch(step, opt)
        for epoch in range(2):
            train_one_epoch(step_fn, batches, opt, device, epoch, None, log_every=2, progress=False, world_size=2)
        counter.uninstall()
        result: dict[str, Any] = {"counts": dict(counter.counts)}

        def nan_on_rank_1(batch):  # step 4 of epoch 2 is NaN on rank 1 only
            nan_on_rank_1.calls += 1
            loss, metrics = step(batch)
            return (loss * math.nan, metrics) if rank == 1 and nan_on_rank_1.calls == 5 else (loss, metrics)

        nan_on_rank_1.calls = 0
        try:
            train_one_epoch(nan_on_rank_1, batches, opt, device, 2, None, log_every=2, progress=False, world_size=2)
        except NonFiniteLossError as err:
            result["nan"] = {"step": err.step, "detected": err.detected_step, "metrics": list(err.metrics),
                             "message": str(err)}
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(result, f)
    finally:
        counter.uninstall()
        dist.destroy_process_group()


@pytest.mark.slow
def test_hostsync_ddp_gather_negatives_checks_shapes_once(tmp_path):
    mp.spawn(_hs_ddp_worker, args=(2, _hs_free_port(), str(tmp_path)), nprocs=2, join=True)
    steps, sync_points = 2 * 6, 2 * 3
    for rank in range(2):
        res = json.loads((tmp_path / f"rank{rank}.json").read_text())
        counts = res["counts"]
        # The shape check: one all_gather_object in the whole run (it was 3 per step).
        assert counts.get("all_gather_object", 0) == 1, counts
        # The gathers of z1, z2, h (forward all_gather, backward all_reduce: device collectives that the
        # loss needs) plus ONE all_reduce per sync point for the stop decision (it was one per step).
        assert counts.get("all_gather", 0) == 3 * steps, counts
        assert counts.get("all_reduce", 0) == 3 * steps + sync_points, counts
        assert counts.get("tolist", 0) == sync_points, counts
        assert sum(counts.values()) == 1 + 6 * steps + 2 * sync_points, counts
        # Both ranks stop at the same sync point, naming the step where rank 1 saw the NaN.
        assert (res["nan"]["step"], res["nan"]["detected"]) == (4, 5)
    rank0 = json.loads((tmp_path / "rank0.json").read_text())["nan"]
    rank1 = json.loads((tmp_path / "rank1.json").read_text())["nan"]
    assert rank0["metrics"] == [] and "on another process" in rank0["message"]
    assert rank1["metrics"] == ["loss", "imid", "cmid"]
