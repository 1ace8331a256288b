"""util/optim.py: the recipes' optimizers and gradient-norm clipping, also with an fp16 GradScaler (issue 22)."""

import pytest
import torch
from torch import nn

from util.optim import build_optimizer, clip_gradients
from epoch_loop import train_one_epoch  # tests/epoch_loop.py


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 1, bias=False)
        self.bn = nn.BatchNorm1d(4)
        self.linear = nn.Linear(4, 2)
        self.cls_token = nn.Parameter(torch.zeros(1, 4, 1))


def _names(model, params):
    ids = {id(p) for p in params}
    return sorted(n for n, p in model.named_parameters() if id(p) in ids)


def test_adamw_groups_are_point_maes_add_weight_decay():
    """Point-MAE tools/builder.py:46: 1-D tensors, *.bias and *token* get weight decay 0."""
    model = _Net()
    model.conv.weight.requires_grad_(False)
    opt = build_optimizer("adamw", model, 5e-4, 0.05, no_decay_1d=True)
    assert isinstance(opt, torch.optim.AdamW)
    (no_decay, decay) = opt.param_groups
    assert _names(model, no_decay["params"]) == ["bn.bias", "bn.weight", "cls_token", "linear.bias"]
    assert _names(model, decay["params"]) == ["linear.weight"]  # the frozen conv is left out
    assert (no_decay["weight_decay"], decay["weight_decay"], decay["lr"]) == (0.0, 0.05, 5e-4)


def test_sgd_decays_every_parameter():
    model = _Net()
    opt = build_optimizer("sgd", model, 0.1, 1e-4, momentum=0.9)
    (group,) = opt.param_groups
    assert isinstance(opt, torch.optim.SGD) and len(group["params"]) == 6
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (0.1, 0.9, 1e-4, False)
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer("lamb", model, 0.1, 0.0)
    with pytest.raises(ValueError, match="needs a momentum"):
        build_optimizer("sgd", model, 0.1, 0.0, momentum=None)


def _huge_gradient_step(scaler=None, max_norm=10.0):
    """One SGD step (lr 1) on w = 0 with gradient (3e4, 4e4) (norm 5e4); returns (norm before, grad, w after)."""
    w = nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([w], lr=1.0)
    loss = (w * torch.tensor([3e4, 4e4])).sum()
    (scaler.scale(loss) if scaler is not None else loss).backward()
    norm = clip_gradients([w], max_norm, opt, scaler)
    grad = w.grad.clone()
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    return norm, grad, w.detach()


def test_a_huge_gradient_is_clipped_to_max_norm():
    norm, grad, w = _huge_gradient_step()
    assert norm.item() == pytest.approx(5e4)
    assert grad.norm().item() == pytest.approx(10.0, rel=1e-5)
    assert w.tolist() == pytest.approx([-6.0, -8.0], rel=1e-5)  # the direction kept, the length 10


def test_with_an_fp16_grad_scaler_the_gradients_are_unscaled_before_the_clip():
    """Clipping the scaled gradients (scale 2**10) would leave a step of length 10 / 2**10 after unscaling."""
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    norm, grad, w = _huge_gradient_step(scaler)
    assert norm.item() == pytest.approx(5e4)  # the unscaled norm
    assert grad.norm().item() == pytest.approx(10.0, rel=1e-5)
    assert w.tolist() == pytest.approx([-6.0, -8.0], rel=1e-5)  # scaler.step does not unscale a second time


@pytest.mark.parametrize("fp16", [False, True])
def test_train_one_epoch_clips_each_step(fp16):
    """The training loop's clipping (train_one_epoch grad_clip_norm) is this one, also under a GradScaler."""
    w = nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([w], lr=1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10) if fp16 else None

    def step_fn(batch):
        return (w * batch).sum(), {}

    train_one_epoch(step_fn, [torch.tensor([3e4, 4e4])], opt, torch.device("cpu"), 0, scaler=scaler,
                    progress=False, grad_clip_norm=10.0)
    assert w.detach().tolist() == pytest.approx([-6.0, -8.0], rel=1e-5)
