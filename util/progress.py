"""Progress display of every command: tqdm's bar on a terminal, a few plain lines in a log.

A bar redraws itself with carriage returns; in a file (SLURM, ``nohup``, CI, the quickstart's logs) every
redraw stays, and a log fills with thousands of them. :func:`progress_bar` therefore decides by the
stream: on a terminal (``isatty()``) it returns today's tqdm bar; otherwise a :class:`LineProgress` that
prints a complete line (no ``\\r``) when at least :data:`LINE_INTERVAL_S` seconds *and*
:data:`LINE_FRACTION` of the total have passed since its last line (whichever is rarer), and a last line
when it closes if the task took that long. A task shorter than the interval prints nothing.

Standard library and tqdm only (tqdm is imported when a bar is shown), so the data tools
(``datasets/``) may use it as well as the training engine (``util/``).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Iterable, Iterator, TextIO

__all__ = ["progress_bar", "LineProgress", "LINE_INTERVAL_S", "LINE_FRACTION"]

LINE_INTERVAL_S = 30.0  # at most one plain line per this many seconds
LINE_FRACTION = 0.1  # ... and per this share of the total (when the total is known)


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:  # a closed stream
        return False


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


class LineProgress:
    """tqdm's interface (iterate, ``update``, ``set_postfix``, ``set_description``, ``close``, context
    manager) for a stream that is not a terminal: a plain line now and then, never a redraw.

    Args:
        iterable: what to iterate over (None: the caller calls :meth:`update`).
        total: number of units (default ``len(iterable)`` when it has one); None: unknown, lines by time only.
        desc: label at the start of each line.
        unit: what is counted.
        file: the stream (default ``sys.stderr``).
        interval_s, fraction: the rarer of the two sets the pace (default :data:`LINE_INTERVAL_S`,
            :data:`LINE_FRACTION`).
    """

    def __init__(self, iterable: Iterable | None = None, total: float | None = None, desc: str = "",
                 unit: str = "it", file: TextIO | None = None, interval_s: float | None = None,
                 fraction: float | None = None) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.file = file
        self.interval_s = LINE_INTERVAL_S if interval_s is None else interval_s
        self.fraction = LINE_FRACTION if fraction is None else fraction
        self.n = 0
        self.postfix = ""
        self.start = self.last_time = time.monotonic()
        self.last_n = 0
        self.closed = False

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("LineProgress without an iterable: call update() instead")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        """Counts ``n`` more units; prints a line when one is due."""
        self.n += n
        now = time.monotonic()
        if now - self.last_time < self.interval_s:
            return
        if self.total and self.n - self.last_n < self.fraction * self.total and self.n < self.total:
            return
        self._line(now)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        """Values shown at the end of the next line (as tqdm's ``set_postfix``; ``refresh`` is ignored)."""
        values = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def close(self) -> None:
        """A last line when the task lasted at least the interval (a short task prints nothing)."""
        if self.closed:
            return
        self.closed = True
        now = time.monotonic()
        if now - self.start >= self.interval_s:
            self._line(now, done=True)

    def _line(self, now: float, done: bool = False) -> None:
        elapsed = now - self.start
        count = f"{self.n:g}/{self.total:g} {self.unit}" if self.total else f"{self.n:g} {self.unit}"
        parts = [f"{self.desc}: " if self.desc else "", count]
        if self.total:
            parts.append(f" ({100.0 * self.n / self.total:.0f}%)")
        parts.append(f", {_duration(elapsed)} elapsed")
        if self.total and not done and 0 < self.n < self.total:
            parts.append(f", about {_duration(elapsed * (self.total - self.n) / self.n)} left")
        if done:
            parts.append(", done")
        if self.postfix:
            parts.append(f" [{self.postfix}]")
        print("".join(parts), file=self.file or sys.stderr, flush=True)
        self.last_time, self.last_n = now, self.n


def progress_bar(iterable: Iterable | None = None, total: float | None = None, desc: str = "",
                 enabled: bool = True, unit: str = "it", leave: bool = False, file: TextIO | None = None) -> Any:
    """The progress display of one loop, for every command (see the module docstring).

    Args:
        iterable: what the loop iterates over (None: the caller calls ``update(n)``).
        total: units of work (default ``len(iterable)``); None when unknown.
        desc: label; unit: what is counted.
        enabled: False shows nothing (``--no_progress``, ``--quiet``, non-main ranks).
        leave: keep the finished bar on a terminal.
        file: the stream (default ``sys.stderr``); a terminal gets a tqdm bar, anything else plain lines.

    Returns:
        a tqdm bar (an enabled display on a terminal) or a :class:`LineProgress` (silent when disabled); both
        iterate like ``iterable`` and have ``update``, ``set_postfix``, ``set_description`` and ``close``.
    """
    if enabled and _is_terminal(sys.stderr if file is None else file):
        try:
            from tqdm import tqdm
        except ImportError:  # without tqdm a terminal gets plain lines too
            pass
        else:
            return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, file=file or sys.stderr,
                        dynamic_ncols=True)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, file=file,
                        interval_s=None if enabled else math.inf)
