"""The training device and its numerics: which device (one place, also under torchrun), backend switches (TF32,
cuDNN benchmark, deterministic kernels) and mixed precision (autocast, GradScaler) on CUDA and the CPU."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch

__all__ = ["AMP_MODES", "autocast_context", "configure_backends", "make_grad_scaler", "resolve_device",
           "resume_exactness_note"]

AMP_MODES = ("none", "bf16", "fp16")


def resolve_device(name: str = "auto", local_rank: int = 0, world_size: int = 1, prog: str = "") -> torch.device:
    """Turn ``--device`` into a ``torch.device`` and select that GPU: the one place a CUDA device is set.

    Rules: ``auto`` is CUDA when available, else the CPU. Under torchrun (``world_size > 1``) every
    process uses the GPU of its local rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` and an explicit
    ``cuda:N`` with another index is refused. In a single process ``cuda`` is ``cuda:0`` and ``cuda:N``
    is GPU N. A CUDA device is made current (``torch.cuda.set_device``), so DataLoader pin-memory
    threads and NCCL use it.

    Args:
        name: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        local_rank: torchrun's LOCAL_RANK (0 in a single process).
        world_size: torchrun's WORLD_SIZE (1 in a single process).
        prog: the script name that prefixes the error message.

    Raises:
        SystemExit: one line naming ``--device`` when the device does not exist or breaks the rules above.
    """
    flag = f"{prog}: --device {name}" if prog else f"--device {name}"
    resolved = ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name
    try:
        device = torch.device(resolved)
    except RuntimeError:
        raise SystemExit(f"{flag}: not a device; use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise SystemExit(f"{flag}: MPS is not available on this machine; use --device cpu.")
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise SystemExit(f"{flag}: CUDA is not available (PyTorch {torch.__version__}, no usable GPU); use "
                         "--device cpu or --device auto.")
    if world_size > 1 and device.index is not None and device.index != local_rank:
        raise SystemExit(f"{flag}: under torchrun each process uses the GPU of its local rank (this one has "
                         f"LOCAL_RANK={local_rank}); pass --device cuda and choose GPUs with CUDA_VISIBLE_DEVICES.")
    index = local_rank if device.index is None else device.index
    count = torch.cuda.device_count()
    if index >= count:
        raise SystemExit(f"{flag}: GPU {index} does not exist; {count} CUDA device(s) are visible.")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def configure_backends(device: torch.device, deterministic: bool = False, allow_tf32: bool = False,
                       amp: str = "none") -> dict[str, Any]:
    """Set the process-wide precision and kernel policy in one place; returns it for the run's config.

    Policy: fp32 means fp32 on every GPU. TF32 is off unless ``allow_tf32`` (then cuBLAS matmuls and
    cuDNN convolutions may use TF32, ``float32_matmul_precision="high"``); otherwise
    ``float32_matmul_precision="highest"``, so the plain and fast EdgeConv agree on Ampere/Hopper as on
    the CPU. ``cudnn.benchmark`` is on (fixed 224 px images pick the fastest convolution once) unless
    ``deterministic``, which also asks for deterministic kernels (``torch.use_deterministic_algorithms`` with
    ``warn_only``, cuDNN deterministic, ``CUBLAS_WORKSPACE_CONFIG``).

    Args:
        device: the training device (the flags are process-global; on the CPU only the matmul precision acts).
        deterministic: deterministic kernels, no cuDNN autotuning.
        allow_tf32: let fp32 matmuls and convolutions use TF32 on GPUs that have it.
        amp: the autocast mode (``"none"``, ``"bf16"``, ``"fp16"``), recorded only.

    Returns:
        ``{"allow_tf32", "cudnn_benchmark", "float32_matmul_precision", "deterministic", "amp"}``, read back
        from torch after setting (``config.json``'s ``precision_policy``).
    """
    _check_amp(amp)
    # Differs from the original: it ran with torch's defaults (cuDNN convolutions in TF32 on Ampere+).
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    torch.set_float32_matmul_precision("high" if allow_tf32 else "highest")
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic:  # deterministic kernels (warn where none exists); process-global
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    return {
        "allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic": bool(deterministic),
        "amp": amp,
    }


def resume_exactness_note(device: torch.device, deterministic: bool) -> str | None:
    """The log line for a resume that is exact only up to floating-point non-determinism, else None.

    On CUDA the fast EdgeConv's backward (``scatter_add_``, index backward) and some cuDNN kernels use
    atomics, whose summation order varies from run to run; only ``--deterministic`` makes a resumed run
    equal an uninterrupted one bit for bit there. The CPU kernels are deterministic.
    """
    if torch.device(device).type != "cuda" or deterministic:
        return None
    return ("Resuming on CUDA without --deterministic: the continuation is exact only up to floating-point "
            "non-determinism (atomic adds in the EdgeConv backward and cuDNN); pass --deterministic for a "
            "bit-exact resume.")


def _check_amp(amp: str) -> None:
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}.")


def autocast_context(device: torch.device, amp: str = "none") -> contextlib.AbstractContextManager:
    """Autocast for the forward pass: bf16/fp16 autocast on CUDA and on the CPU, ``nullcontext`` for fp32.

    Args:
        device: the device the forward pass runs on (``cuda`` or ``cpu``; other types run in fp32).
        amp: ``"none"``, ``"bf16"`` or ``"fp16"``.
    """
    _check_amp(amp)
    device_type = torch.device(device).type
    if amp == "none" or device_type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device_type, dtype=dtype)


def make_grad_scaler(device: torch.device, amp: str = "none") -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 autocast (CUDA or CPU), else None (bf16 and fp32 need no loss scaling)."""
    _check_amp(amp)
    device_type = torch.device(device).type
    if amp == "fp16" and device_type in ("cuda", "cpu"):
        return torch.amp.GradScaler(device_type)
    return None
