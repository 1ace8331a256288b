"""The task runner of the data writers (``datasets.synthetic``, ``datasets.prepare_meshes``) and of
``datasets.check --full``.

:class:`Runner` maps a top-level (picklable) function over a list of tasks, inline or over a process
pool, with an optional progress bar; results come back in task order, so what a writer does with them
does not depend on the number of workers. A worker exits as soon as the process that started the pool
ends, however it ends (a SIGKILL included), so no worker, forkserver or resource tracker outlives it.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import forkserver, get_all_start_methods, get_context
from typing import Any, Callable, Sequence

from util.fileio import pid_alive
from util.progress import progress_bar

__all__ = ["Runner", "exit_with_parent"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _wait_for_exit(pid: int, poll_s: float) -> None:
    """Returns once process ``pid`` has ended: a pidfd (Linux >= 5.3) becomes readable when it ends
    (a zombie counts as ended); elsewhere its existence is polled every ``poll_s`` seconds."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # already gone
    except (AttributeError, OSError):  # no pidfd on this system: poll
        while pid_alive(pid):
            time.sleep(poll_s)
        return
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


def _exit_when_ended(pid: int, poll_s: float) -> None:
    _wait_for_exit(pid, poll_s)
    os._exit(1)


def _killed_with_parent() -> bool:
    """Linux: asks the kernel to SIGKILL this process when its parent ends (``PR_SET_PDEATHSIG``);
    False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def exit_with_parent(pid: int, poll_s: float = 1.0) -> None:
    """Pool-worker initializer: this worker ends as soon as process ``pid`` (the one that started the
    pool) has ended, however it ended (a SIGKILL included).

    Without it a killed writer leaves its workers blocked on their task queue for ever, and with them
    the forkserver and the resource tracker, which live as long as a worker holds their pipes. Two
    mechanisms: (1) Linux: the kernel kills the worker when its parent ends; under forkserver the parent
    is the forkserver, which exits once every holder of its "alive" pipe has ended, so the worker closes
    its own copy (it starts no processes) and the forkserver then ends with ``pid``; (2) everywhere: a
    daemon thread that waits for ``pid`` to end and exits (it needs the GIL, so a worker inside a long C
    call exits when that call returns). A worker killed this way may leave a temporary file; the
    writers remove those at their next start.
    """
    if _killed_with_parent():
        if os.getppid() == 1:  # the parent ended before the request took effect
            os._exit(1)
        server = getattr(forkserver, "_forkserver", None)
        alive_fd = getattr(server, "_forkserver_alive_fd", None)
        if isinstance(alive_fd, int) and os.getppid() != pid:  # forked by the forkserver
            os.close(alive_fd)
            server._forkserver_alive_fd = None
    threading.Thread(target=_exit_when_ended, args=(pid, poll_s), name="exit-with-parent", daemon=True).start()


class Runner:
    """Maps tasks in order, inline or over a process pool, with an optional progress display on stderr.

    Args:
        workers: processes; 1 runs every task in this process. The pool starts at the first
            :meth:`map` with more than one task and is reused by the next ones.
        progress: show the progress of each :meth:`map` (:func:`util.progress.progress_bar`: a bar on a
            terminal, plain lines in a log).

    Use it as a context manager (or call :meth:`close`): on an error or Ctrl-C inside :meth:`map`
    the tasks not started yet are dropped and the error is raised.
    """

    def __init__(self, workers: int, progress: bool) -> None:
        self.workers = max(1, int(workers))
        self.progress = progress
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any], desc: str,
            weights: Sequence[int] | None = None, leave: bool = False, unit: str = "obj") -> list:
        """``[fn(t) for t in tasks]``, in task order. ``weights``: progress units per task (default 1);
        ``leave``: keep the finished bar on screen; ``unit``: what the bar counts."""
        bar = progress_bar(total=sum(weights) if weights else len(tasks), desc=desc, unit=unit,
                           enabled=self.progress and bool(tasks), leave=leave)
        results: list = [None] * len(tasks)
        try:
            if self.workers == 1 or len(tasks) <= 1:
                for i, task in enumerate(tasks):
                    results[i] = fn(task)
                    bar.update(weights[i] if weights else 1)
            else:
                if self.pool is None:
                    # forkserver/spawn: forking a parent that may hold torch/OpenMP threads can deadlock
                    method = "forkserver" if "forkserver" in get_all_start_methods() else "spawn"
                    self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context(method),
                                                    initializer=exit_with_parent, initargs=(os.getpid(),))
                futures = {self.pool.submit(fn, task): i for i, task in enumerate(tasks)}
                for future in as_completed(futures):
                    i = futures[future]
                    results[i] = future.result()  # re-raises a worker's error
                    bar.update(weights[i] if weights else 1)
        except BaseException:
            self.close()
            raise
        finally:
            bar.close()
        return results

    def close(self) -> None:
        """Stops the pool (if one was started), dropping the tasks not started yet."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
