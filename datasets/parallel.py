"""The task runner of the data writers (``datasets.synthetic``, ``datasets.prepare_meshes``) and of
``datasets.check --full``.

:class:`Runner` maps a top-level (picklable) function over a list of tasks, inline or over a process
pool, with an optional progress bar; results come back in task order, so what a writer does with them
does not depend on the number of workers.
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_all_start_methods, get_context
from typing import Any, Callable, Sequence

__all__ = ["Runner"]


class Runner:
    """Maps tasks in order, inline or over a process pool, with an optional progress bar on stderr.

    Args:
        workers: processes; 1 runs every task in this process. The pool starts at the first
            :meth:`map` with more than one task and is reused by the next ones.
        progress: show a tqdm bar per :meth:`map` (a one-line message when tqdm is missing).
        name: the writer's name, in the message printed without tqdm.

    Use it as a context manager (or call :meth:`close`): on an error or Ctrl-C inside :meth:`map`
    the tasks not started yet are dropped and the error is raised.
    """

    def __init__(self, workers: int, progress: bool, name: str) -> None:
        self.workers = max(1, int(workers))
        self.progress = progress
        self.name = name
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any], desc: str,
            weights: Sequence[int] | None = None, leave: bool = False, unit: str = "obj") -> list:
        """``[fn(t) for t in tasks]``, in task order. ``weights``: progress units per task (default 1);
        ``leave``: keep the finished bar on screen; ``unit``: what the bar counts."""
        bar = None
        if self.progress and tasks:
            try:
                from tqdm import tqdm
                bar = tqdm(total=sum(weights) if weights else len(tasks), desc=desc, unit=unit,
                           file=sys.stderr, leave=leave)
            except ImportError:
                print(f"[{self.name}] {desc}: {len(tasks)} tasks", file=sys.stderr)
        results: list = [None] * len(tasks)
        try:
            if self.workers == 1 or len(tasks) <= 1:
                for i, task in enumerate(tasks):
                    results[i] = fn(task)
                    if bar is not None:
                        bar.update(weights[i] if weights else 1)
            else:
                if self.pool is None:
                    # forkserver/spawn: forking a parent that may hold torch/OpenMP threads can deadlock
                    method = "forkserver" if "forkserver" in get_all_start_methods() else "spawn"
                    self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context(method))
                futures = {self.pool.submit(fn, task): i for i, task in enumerate(tasks)}
                for future in as_completed(futures):
                    i = futures[future]
                    results[i] = future.result()  # re-raises a worker's error
                    if bar is not None:
                        bar.update(weights[i] if weights else 1)
        except BaseException:
            self.close()
            raise
        finally:
            if bar is not None:
                bar.close()
        return results

    def close(self) -> None:
        """Stops the pool (if one was started), dropping the tasks not started yet."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
