"""torchrun / DistributedDataParallel helpers.

Distributed mode is switched on by torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), not by a
flag. Every function here is a no-op (or the identity) in a plain single-process run, so callers
never branch on whether they run distributed.

Typical use in an entry script::

    env = distributed_env()                       # read torchrun's variables, no side effects
    device = resolve_device(args.device, env.local_rank, env.world_size)  # selects this rank's GPU
    info = init_distributed(backend=backend_for(device))
    ...
    model = wrap_ddp(model, device)               # DDP only when info.is_distributed
    check_same_shapes(z)                          # once per run (a host sync)
    z_all = all_gather_with_grad(z)               # (world_size * B, D), gradient-correct
    ...
    cleanup()
"""

from __future__ import annotations

import datetime
import gc
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0 in a single-process run).
        world_size: number of processes (1 in a single-process run).
        local_rank: rank on this machine; selects the GPU.
        is_distributed: True when a process group with more than one process is initialised.
        is_main: True on rank 0, the only rank that logs and writes files.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    is_distributed: bool = False
    is_main: bool = True


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(
            f"Environment variable {name}={value!r} is not an integer; it is set by torchrun. "
            "Unset it for a single-process run or launch with `torchrun --nproc_per_node N`."
        ) from err


def distributed_env() -> DistInfo:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK without initialising anything.

    Returns:
        DistInfo; ``is_distributed`` is True when WORLD_SIZE > 1.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"Inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world_size}. "
            "Launch with `torchrun --nproc_per_node N script.py ...`."
        )
    return DistInfo(
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        is_distributed=world_size > 1,
        is_main=rank == 0,
    )


def backend_for(device: torch.device | str) -> str:
    """The collective backend for a device: ``nccl`` for CUDA, ``gloo`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> DistInfo:
    """Initialise the default process group when launched by torchrun with WORLD_SIZE > 1.

    Args:
        backend: ``"nccl"`` or ``"gloo"``; None picks nccl when CUDA is available, else gloo.
            Pass ``backend_for(device)`` so a CPU run on a GPU machine uses gloo.
        timeout_s: collective timeout in seconds.

    The GPU is not selected here: ``util.device.resolve_device`` (called first) makes this rank's
    ``cuda:LOCAL_RANK`` current, the one place a device is set.

    Returns:
        DistInfo for this process. In a single-process run nothing is initialised.
    """
    info = distributed_env()
    if not info.is_distributed:
        return info
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this PyTorch build; run on 1 process.")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s)
        store = _restart_safe_store(info, timeout)
        if store is None:
            dist.init_process_group(backend=backend, timeout=timeout)
        else:
            dist.init_process_group(backend=backend, store=store, rank=info.rank, world_size=info.world_size,
                                    timeout=timeout)
    return info


# The stores _restart_safe_store made (released by cleanup(), not at interpreter exit).
_STORES: list[dist.Store] = []


def _restart_safe_store(info: DistInfo, timeout: datetime.timedelta) -> dist.Store | None:
    """Under torchrun's shared rendezvous store, a store whose keys are prefixed with the restart attempt.

    torchrun (``--max-restarts``) keeps one TCPStore for all attempts and its workers use it without a
    per-attempt prefix, so restarted workers can read the process-group addresses of the dead ones and fail
    ("Connection refused") or hang while connecting. None (the default ``env://`` init) outside torchrun or
    when the store is not shared (TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1).
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    base = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), info.world_size,
                         is_master=False, timeout=timeout)
    store = dist.PrefixStore(f"crosspoint/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", base)
    _STORES.extend((store, base))
    return store


def is_dist() -> bool:
    """True when a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank, 0 when not distributed."""
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    """World size, 1 when not distributed."""
    return dist.get_world_size() if is_dist() else 1


def barrier() -> None:
    """Synchronise all ranks; no-op when not distributed."""
    if is_dist():
        dist.barrier()


def cleanup() -> None:
    """Destroy the default process group if one is initialised, then the stores made for it.

    The stores of :func:`_restart_safe_store` are released here, right after the process group, rather than
    at interpreter exit: a TCPStore client destroyed during interpreter teardown can abort the process
    ("terminate called without an active exception"), which torchrun reports as a failed worker.
    """
    if is_dist():
        dist.destroy_process_group()
    _STORES.clear()
    gc.collect()


def unwrap(model: nn.Module) -> nn.Module:
    """Strip DistributedDataParallel / DataParallel (``.module``) and torch.compile (``._orig_mod``)
    wrappers, so ``unwrap(model).state_dict()`` has the plain key names."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def wrap_ddp(model: nn.Module, device: torch.device, find_unused_parameters: bool = False) -> nn.Module:
    """Wrap ``model`` in DistributedDataParallel when distributed, else return it unchanged.

    Args:
        model: module already on ``device``.
        device: its device; CUDA devices are passed as ``device_ids``.
        find_unused_parameters: forwarded to DDP (needed only if some parameters get no gradient).
    """
    if not is_dist():
        return model
    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather whose backward returns this rank's slice of the summed upstream gradient.

    Every rank computes its own copy of a loss on the gathered tensor. The gradient of the sum of
    those copies with respect to this rank's input is the all-reduced (summed) upstream gradient,
    sliced at this rank's rows. With DDP's gradient averaging over ranks, the parameter gradient then
    equals the single-process gradient of the loss on the full (global) batch when every rank computes
    the same loss.
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        world_size = dist.get_world_size()
        ctx.rank = dist.get_rank()
        ctx.batch = tensor.shape[0]
        gathered = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(gathered, tensor.contiguous())
        return torch.cat(gathered, dim=0)  # (world_size * B, ...)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.batch
        return grad[start : start + ctx.batch]


def check_same_shapes(*tensors: torch.Tensor | None) -> None:
    """Refuse, in one line, tensors whose shapes differ between ranks (no-op when not distributed).

    One ``all_gather_object`` of every tensor's shape: a host synchronisation, so call it once per run
    (before the first :func:`all_gather_with_grad`), not per step. None entries are compared as None.
    """
    if not is_dist() or get_world_size() == 1:
        return
    shapes = tuple(None if t is None else tuple(t.shape) for t in tensors)
    gathered = all_gather_object(shapes)
    if any(s != gathered[0] for s in gathered):
        raise ValueError(
            f"all_gather_with_grad needs equal shapes on every rank, got {gathered} (rank order). "
            "Use drop_last=True in the DataLoader so every rank sees full batches."
        )


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (B, ...) from all ranks along dim 0 -> (world_size * B, ...), rank order.

    Gradient-correct: the backward pass all-reduces the upstream gradient and returns this rank's
    rows, so gradients flow to every rank's local input (see ``_AllGatherWithGrad``). All ranks must
    pass the same shape at every call (use ``drop_last=True``); it is not checked here, which would
    synchronise with the host at every step: check it once per run with :func:`check_same_shapes`.
    Identity when not distributed.
    """
    if not is_dist() or get_world_size() == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor)


def all_gather_object(obj: Any) -> list[Any]:
    """Gather a picklable object from every rank -> list indexed by rank (``[obj]`` when not distributed)."""
    if not is_dist():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Return rank ``src``'s ``obj`` on every rank (``obj`` itself when not distributed)."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_mean(values: dict[str, float], device: torch.device | str = "cpu") -> dict[str, float]:
    """Average a dict of floats over ranks (identity when not distributed).

    Args:
        values: name -> float; every rank must pass the same keys.
        device: where the temporary tensor lives (must suit the backend: CUDA for nccl).
    """
    if not is_dist() or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)  # (K,)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= get_world_size()
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def all_reduce_min_(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise minimum over ranks, in place, without a host synchronisation (identity when not distributed).

    Args:
        tensor: any shape, on the backend's device (CUDA for nccl); every rank passes the same shape.
    Returns:
        ``tensor`` itself.
    """
    if is_dist():
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return tensor


def all_reduce_max_int(value: int, device: torch.device | str = "cpu") -> int:
    """The largest of an integer over ranks (``value`` itself when not distributed)."""
    if not is_dist():
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())
