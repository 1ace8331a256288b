"""util/device.py: device choice and mixed precision on the CPU."""


from __future__ import annotations

import contextlib

import pytest
import torch

from util.device import autocast_context, make_grad_scaler, resolve_device



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
