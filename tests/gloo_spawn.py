"""Run a test body on several gloo processes (``torch.multiprocessing.spawn``) on this host.

The body runs in its own frame, so the models and DDP wrappers it made are freed when it returns; the process
group is destroyed after that (``util.distributed.cleanup``, which also collects reference cycles). Destroying
it while a DDP reducer in the caller's frame still held it left the gloo group to interpreter teardown, where
it aborted about one run in fifteen ("terminate called without an active exception").
"""

import os
import socket
from typing import Any, Callable

import torch
import torch.multiprocessing as mp

from util import distributed


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(body: Callable[..., Any], world_size: int, *args: Any) -> None:
    """Call ``body(rank, world_size, *args)`` on ``world_size`` gloo processes and wait for all of them.

    ``body`` must be a module-level function (it is pickled by name); a failure in any process fails the call.
    """
    mp.spawn(_worker, args=(world_size, free_port(), body, args), nprocs=world_size, join=True)


def _worker(rank: int, world_size: int, port: int, body: Callable[..., Any], args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        body(rank, world_size, *args)
    finally:
        distributed.cleanup()
