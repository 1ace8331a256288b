"""util/schedules.py: the per-epoch lr of both fine-tuning recipes (issue 22) and exact resume."""

import math
import warnings

import pytest
import torch

from util.schedules import build_schedule, warmup_cosine_lr


def _optimizer(*lrs):
    """An SGD optimizer with one param group per lr."""
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs], lr=lrs[0])


def _per_epoch(schedule, epochs):
    """The lr of every epoch 0..epochs-1, read from the optimizer as a training loop stepping after each epoch."""
    lrs = []
    for _ in range(epochs):
        lrs.append(schedule.optimizer.param_groups[0]["lr"])
        schedule.step()
    return lrs


def _dgcnn_reference_lrs(epochs, lr, eta_min):
    """WangYueFt/dgcnn pytorch/main.py:66-72: CosineAnnealingLR stepped at the start of every epoch."""
    opt = _optimizer(lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs, eta_min=eta_min)
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scheduler.step() before optimizer.step(), as the reference
        for _ in range(epochs):
            sched.step()
            lrs.append(opt.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize("epochs", [5, 250])
def test_dgcnn_schedule_is_the_references_step_at_the_start_of_each_epoch(epochs):
    ours = _per_epoch(build_schedule(_optimizer(0.1), "cosine", epochs, 1e-3), epochs)
    assert ours == pytest.approx(_dgcnn_reference_lrs(epochs, 0.1, 1e-3), rel=1e-9, abs=0)
    assert ours[0] < 0.1 and ours[-1] == 1e-3  # epoch 0 below the initial lr, the last at eta_min


def test_plain_order_is_stepping_after_each_epoch():
    """The order before issue 22: epoch 0 at the initial lr, the last one step above eta_min."""
    opt = _optimizer(0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 6, eta_min=1e-3)
    expected = []
    for _ in range(6):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ours = _per_epoch(build_schedule(_optimizer(0.1), "cosine", 6, 1e-3, order="plain"), 6)
    assert ours == pytest.approx(expected, rel=1e-9, abs=0) and ours[0] == 0.1


def test_warmup_is_the_linear_ramp_with_the_runners_one_epoch_lag():
    """Hand-computed: lr 0.011, warmup_lr_init 0.001, 5 warm-up epochs -> steps of 0.002 from 0.001. The runner
    sets 0.001 when building the scheduler and calls step(epoch) after epoch `epoch`, so epochs 0 and 1 both
    train at 0.001; epoch 6 trains at t = 5, the cosine's first value: 0.001 + 0.005 (1 + cos(pi/4))."""
    ours = _per_epoch(build_schedule(_optimizer(0.011), "warmup_cosine", 20, 0.001, warmup_epochs=5,
                                     warmup_lr=0.001), 7)
    assert ours == pytest.approx([0.001, 0.001, 0.003, 0.005, 0.007, 0.009, 0.0095355339], rel=1e-9)
    plain = _per_epoch(build_schedule(_optimizer(0.011), "warmup_cosine", 20, 0.001, warmup_epochs=5,
                                      warmup_lr=0.001, order="plain"), 5)
    assert plain == pytest.approx([0.001, 0.003, 0.005, 0.007, 0.009], rel=1e-12)


def test_cosine_part_is_timms_formula():
    """timm CosineLRScheduler, t_mul 1, cycle_limit 1, warmup_prefix False: lr_min + (lr - lr_min) (1 + cos(pi t /
    t_initial)) / 2 for warmup_t <= t < t_initial (t counted from 0, not from the warm-up's end), lr_min after."""
    lr, lr_min, t_initial = 0.011, 0.001, 20
    for t in range(5, 25):
        expected = lr_min if t >= t_initial else lr_min + (lr - lr_min) * (1 + math.cos(math.pi * t / t_initial)) / 2
        assert warmup_cosine_lr(t, lr, t_initial, lr_min, 5, 0.001) == pytest.approx(expected, rel=1e-12)
    assert warmup_cosine_lr(10, lr, t_initial, lr_min, 5, 0.001) == pytest.approx(0.006, rel=1e-12)  # cos(pi/2)=0


def test_pointmae_published_schedule():
    """Point-MAE: AdamW lr 5e-4, CosLR 300 epochs, 10 warm-up epochs from 1e-6, lr_min 1e-6 (by hand)."""
    ours = _per_epoch(build_schedule(_optimizer(5e-4), "warmup_cosine", 300, 1e-6, warmup_epochs=10,
                                     warmup_lr=1e-6), 300)
    assert ours[:3] == pytest.approx([1e-6, 1e-6, 1e-6 + 4.99e-5], rel=1e-9)
    assert ours[11] == pytest.approx(1e-6 + 0.5 * 4.99e-4 * (1 + math.cos(math.pi * 10 / 300)), rel=1e-12)
    assert max(ours) < 5e-4 and ours[-1] == pytest.approx(1e-6 + 0.5 * 4.99e-4 * (1 + math.cos(math.pi * 298 / 300)))


def test_every_param_group_follows_its_own_base_lr():
    sched = build_schedule(_optimizer(0.1, 0.01), "cosine", 4, 0.0, order="plain")
    sched.step()
    assert sched.get_last_lr() == pytest.approx([0.1 * (1 + math.cos(math.pi / 4)) / 2,
                                                 0.01 * (1 + math.cos(math.pi / 4)) / 2])


@pytest.mark.parametrize("kind", ["cosine", "warmup_cosine"])
def test_state_dict_round_trip_resumes_exactly(tmp_path, kind):
    warmup = 3 if kind == "warmup_cosine" else 0
    first = build_schedule(_optimizer(0.1, 0.05), kind, 12, 1e-3, warmup_epochs=warmup, warmup_lr=1e-4)
    straight = _per_epoch(first, 12)
    interrupted = build_schedule(_optimizer(0.1, 0.05), kind, 12, 1e-3, warmup_epochs=warmup, warmup_lr=1e-4)
    head = _per_epoch(interrupted, 5)
    torch.save(interrupted.state_dict(), tmp_path / "s.pt")
    opt = _optimizer(0.7, 0.7)  # a fresh optimizer whose lrs the state must replace
    resumed = build_schedule(opt, kind, 12, 1e-3, warmup_epochs=warmup, warmup_lr=1e-4)
    resumed.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert resumed.base_lrs == [0.1, 0.05] and resumed.get_last_lr() == first.lr_at(5)
    assert head + _per_epoch(resumed, 7) == straight


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="no warm-up"):
        build_schedule(_optimizer(0.1), "cosine", 10, 1e-3, warmup_epochs=2)
    with pytest.raises(ValueError, match="shorter"):
        build_schedule(_optimizer(0.1), "warmup_cosine", 10, 1e-3, warmup_epochs=10)
    with pytest.raises(ValueError, match="unknown schedule"):
        build_schedule(_optimizer(0.1), "step", 10, 1e-3)
