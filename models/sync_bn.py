"""BatchNorm with batch statistics over all ranks of a process group, on any device and backend.

``torch.nn.SyncBatchNorm`` accepts CUDA tensors only, so it can neither run on the CPU nor be tested
with the gloo backend. :class:`SyncBatchNorm1d` / :class:`SyncBatchNorm2d` are ``nn.BatchNorm1d`` /
``nn.BatchNorm2d`` subclasses (same parameters and buffers, so state dicts and the official
checkpoints' keys are unchanged) whose training-mode forward uses the statistics of the global
batch: every rank writes its (count, mean, centred sum of squares) per channel into its own row of
a (world_size, 1 + 2C) table, one differentiable all-reduce sums the table (its backward all-reduces
the gradient, as SyncBatchNorm's backward does), and every rank combines the rows exactly (Chan et
al.'s pairwise update, no E[x^2] - E[x]^2 cancellation). Running statistics are updated like
nn.BatchNorm's: momentum (or the cumulative average when it is None) and the unbiased variance over
the global count. In eval mode, or when no process group with more than one rank exists, the
forward is nn.BatchNorm's own.

:func:`convert_sync_batchnorm` replaces every BatchNorm1d/2d of a model. The fast EdgeConv
(:mod:`models.edgeconv`) computes its BatchNorm statistics from per-point sums and never calls the
module's forward; it checks for these classes (:func:`sync_group`) and all-reduces its own
statistics and gradient sums instead.
"""

import torch
import torch.distributed as dist
import torch.nn as nn


def sync_group(bn: nn.Module):
    """The process group whose batch statistics ``bn`` must combine now, or None.

    None unless ``bn`` is a :class:`SyncBatchNorm1d` / :class:`SyncBatchNorm2d` in training mode
    and a process group with more than one rank is initialised.
    """
    if not isinstance(bn, (SyncBatchNorm1d, SyncBatchNorm2d)) or not bn.training:
        return None
    if not (dist.is_available() and dist.is_initialized()):
        return None
    group = bn.process_group if bn.process_group is not None else dist.group.WORLD
    return group if dist.get_world_size(group) > 1 else None


class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks of a group; the backward sums the gradient over the ranks as well.

    Each rank's loss depends on the summed tensor, so the gradient with respect to this rank's input
    is the sum of every rank's upstream gradient (what ``torch.distributed.nn.functional.all_reduce``
    does; that function is deprecated in recent PyTorch).
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad = grad_output.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


def gather_rows(stats: torch.Tensor, group, differentiable: bool) -> torch.Tensor:
    """Every rank's (F,) row of statistics as one (world_size, F) table, by one all-reduce.

    Args:
        stats: (F,) this rank's values.
        group: process group.
        differentiable: an autograd all-reduce whose backward all-reduces the gradient of the table
            (as ``torch.distributed.nn.functional.all_reduce``); otherwise a plain in-place all-reduce.
    Returns:
        (world_size, F) rows in rank order.
    """
    world_size = dist.get_world_size(group)
    rank = dist.get_rank(group)
    width = stats.shape[0]
    before = stats.new_zeros(rank * width)  # (rank*F,)
    after = stats.new_zeros((world_size - rank - 1) * width)  # ((W-rank-1)*F,)
    table = torch.cat((before, stats, after)).view(world_size, width)  # (W, F) zero but for this rank's row
    if differentiable:
        return _AllReduceSum.apply(table, group)  # (W, F)
    dist.all_reduce(table, op=dist.ReduceOp.SUM, group=group)
    return table  # (W, F)


def combine_moments(
    counts: torch.Tensor, means: torch.Tensor, sq_sums: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pool per-rank moments exactly: global count, mean and centred sum of squares.

    Args:
        counts: (W,) values per channel on each rank.
        means: (W, C) per-rank means.
        sq_sums: (W, C) per-rank sums of squared deviations from the rank's own mean.
    Returns:
        count () , mean (C,), sq_sum (C,) of the pooled values.
    """
    count = counts.sum()  # ()
    weights = counts.unsqueeze(1)  # (W, 1)
    mean = (weights * means).sum(dim=0) / count  # (C,)
    sq_sum = sq_sums.sum(dim=0) + (weights * (means - mean).square()).sum(dim=0)  # (C,)
    return count, mean, sq_sum


def running_update_factor(bn: nn.modules.batchnorm._BatchNorm) -> float | None:
    """nn.BatchNorm's training-mode bookkeeping: count the batch in ``num_batches_tracked`` and return the
    running-statistics factor (``momentum``, or 1 / num_batches_tracked when it is None); None when ``bn``
    updates no running statistics (eval mode, or it keeps none)."""
    if not (bn.training and bn.track_running_stats and bn.running_mean is not None):
        return None
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    return factor


def update_running_stats(running_mean: torch.Tensor, running_var: torch.Tensor, mean: torch.Tensor,
                         var: torch.Tensor, count: int | torch.Tensor, factor: float) -> None:
    """nn.BatchNorm's running-statistics update, in place, from batch statistics.

    Args:
        running_mean, running_var: (C,) buffers.
        mean: (C,) batch mean.
        var: (C,) biased batch variance.
        count: values per channel in the batch (global over ranks); the running variance takes the unbiased
            var * (count / (count - 1)).
        factor: from :func:`running_update_factor`.
    """
    with torch.no_grad():
        unbiased = var * (count / (count - 1))  # (C,)
        running_mean.mul_(1 - factor).add_(mean.to(running_mean.dtype), alpha=factor)
        running_var.mul_(1 - factor).add_(unbiased.to(running_var.dtype), alpha=factor)


class _SyncBatchNormMixin:
    """Training-mode forward with statistics over the process group (see the module docstring)."""

    def __init__(self, *args, process_group=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.process_group = process_group

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """(B, C, ...) -> (B, C, ...); statistics over the batch of every rank in training mode."""
        group = sync_group(self)
        if group is None:
            return super().forward(input)
        self._check_input_dim(input)
        channels = input.shape[1]
        dims = [d for d in range(input.dim()) if d != 1]
        shape = [1, channels] + [1] * (input.dim() - 2)
        with torch.autocast(device_type=input.device.type, enabled=False):
            # Statistics in at least float32, like BatchNorm under autocast.
            x = input.to(torch.promote_types(input.dtype, torch.float32))
            local_count = x.new_full((1,), x.numel() // channels)  # (1,)
            local_mean = x.mean(dim=dims)  # (C,)
            local_sq = (x - local_mean.view(shape)).square().sum(dim=dims)  # (C,)
            table = gather_rows(torch.cat((local_count, local_mean, local_sq)), group, differentiable=True)
            count, mean, sq_sum = combine_moments(table[:, 0], table[:, 1 : 1 + channels], table[:, 1 + channels :])
            var = sq_sum / count  # (C,) biased, used for normalization
            factor = running_update_factor(self)
            if factor is not None:
                update_running_stats(self.running_mean, self.running_var, mean.detach(), var.detach(), count.detach(),
                                     factor)
            out = (x - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)  # (B, C, ...)
            if self.weight is not None:
                out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


class SyncBatchNorm1d(_SyncBatchNormMixin, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` with batch statistics over the ranks of ``process_group`` (default: all)."""


class SyncBatchNorm2d(_SyncBatchNormMixin, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with batch statistics over the ranks of ``process_group`` (default: all)."""


_SYNC_CLASSES = {nn.BatchNorm1d: SyncBatchNorm1d, nn.BatchNorm2d: SyncBatchNorm2d}


def _to_sync(bn: nn.modules.batchnorm._BatchNorm, process_group) -> nn.Module:
    """A Sync copy of ``bn`` sharing its parameters and buffers (same tensors, so optimizers keep them)."""
    sync = _SYNC_CLASSES[type(bn)](bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                                   process_group=process_group)
    for name, param in bn.named_parameters(recurse=False):
        setattr(sync, name, param)
    for name, buf in bn.named_buffers(recurse=False):
        setattr(sync, name, buf)
    sync.train(bn.training)
    return sync


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Replace every nn.BatchNorm1d / nn.BatchNorm2d in ``module`` by its Sync counterpart, in place.

    Parameters and buffers are shared with the replaced modules, so state-dict keys and values and
    any optimizer built before stay valid. A BatchNorm registered under two names (``bn1`` and
    ``conv1.1`` of the DGCNN encoders) stays one module. The fast EdgeConv layers use the Sync
    modules' statistics through :func:`sync_group`.

    Args:
        module: model (or a single BatchNorm).
        process_group: group to combine statistics over (None: all ranks).
    Returns:
        the converted module (``module`` itself unless it is a BatchNorm).
    """
    converted: dict[int, nn.Module] = {}

    def convert(mod: nn.Module) -> nn.Module:
        if id(mod) in converted:
            return converted[id(mod)]
        new = _to_sync(mod, process_group) if type(mod) in _SYNC_CLASSES else mod
        converted[id(mod)] = new
        if new is mod:
            for name, child in list(mod.named_children()):
                setattr(mod, name, convert(child))
        return new

    return convert(module)
