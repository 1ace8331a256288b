"""Run logging: console + ``log.txt`` + ``metrics.jsonl`` + optional Weights & Biases.

Only the main process logs: construct ``Logger(..., enabled=info.is_main)`` on every rank and the
other ranks' loggers do nothing. wandb is imported only when ``wandb_mode != "disabled"``.
Files are opened in append mode, so a resumed run continues the same files.
"""

from __future__ import annotations

import datetime
import json
import math
import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tqdm import tqdm

WANDB_MODES = ("online", "offline", "disabled")
LOG_FILES = ("log.txt", "metrics.jsonl")


def wandb_login_problem(mode: str) -> str | None:
    """Why ``--wandb online`` would fail to log in, or None (also for the other modes).

    Checked without the network and without importing wandb, the way wandb finds its key: the environment
    variable WANDB_API_KEY, else the netrc file (``$NETRC`` or ``~/.netrc``) entry of the wandb host
    (``$WANDB_BASE_URL``, default https://api.wandb.ai), which ``wandb login`` writes.
    """
    if mode != "online" or os.environ.get("WANDB_API_KEY"):
        return None
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        entry = netrc.netrc(str(path)).authenticators(host) if path.is_file() else None
    except (OSError, netrc.NetrcParseError):
        entry = None
    if entry and entry[2]:
        return None
    return (f"--wandb online needs a wandb login (no WANDB_API_KEY and no {host} entry in {path}); run `wandb login` "
            "first, or use --wandb offline / disabled.")


def _jsonable(value: Any) -> Any:
    """Turn tensors / numpy scalars into plain Python numbers; non-finite floats into strings."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class Logger:
    """Console and file logger for one run.

    Args:
        log_dir: directory for ``log.txt`` and ``metrics.jsonl`` (created if needed).
        wandb_mode: ``"online"``, ``"offline"`` or ``"disabled"`` (default; wandb is not imported).
        config: resolved run configuration (sent to wandb).
        project: wandb project name.
        run_name: wandb run name.
        enabled: False on non-main ranks: every method becomes a no-op.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        wandb_mode: str = "disabled",
        config: dict[str, Any] | None = None,
        project: str = "crosspoint",
        run_name: str | None = None,
        enabled: bool = True,
    ) -> None:
        if wandb_mode not in WANDB_MODES:
            raise ValueError(f"wandb_mode must be one of {WANDB_MODES}, got {wandb_mode!r}.")
        self.enabled = enabled
        self.log_dir = os.fspath(log_dir)
        self._wandb_run = None
        self._text = None
        self._jsonl = None
        if not enabled:
            return
        os.makedirs(self.log_dir, exist_ok=True)
        self._text = open(os.path.join(self.log_dir, LOG_FILES[0]), "a", encoding="utf-8")
        self._jsonl = open(os.path.join(self.log_dir, LOG_FILES[1]), "a", encoding="utf-8")
        if wandb_mode != "disabled":
            self._wandb_run = self._init_wandb(wandb_mode, config, project, run_name)

    def _init_wandb(
        self, mode: str, config: dict[str, Any] | None, project: str, run_name: str | None
    ) -> Any:
        try:
            import wandb
        except ImportError as err:
            raise ImportError(
                f"--wandb {mode} needs the `wandb` package: `pip install wandb`, or use --wandb disabled."
            ) from err
        return wandb.init(project=project, name=run_name, config=config, mode=mode, dir=self.log_dir)

    def info(self, msg: str) -> None:
        """Print ``msg`` (without breaking tqdm bars) and append it, time-stamped, to log.txt."""
        if not self.enabled:
            return
        tqdm.write(msg)
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        for line in str(msg).splitlines() or [""]:
            self._text.write(f"[{stamp}] {line}\n")
        self._text.flush()

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Append ``{"step": step, **metrics}`` to metrics.jsonl and send ``metrics`` to wandb."""
        if not self.enabled:
            return
        record = {"step": int(step), **_jsonable(dict(metrics))}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._wandb_run is not None:
            self._wandb_run.log(dict(metrics), step=int(step))

    def file_sizes(self) -> dict[str, int]:
        """Bytes written so far to log.txt and metrics.jsonl (both flushed), e.g. to cut them back on resume."""
        if not self.enabled:
            return {}
        return {name: f.tell() for name, f in zip(LOG_FILES, (self._text, self._jsonl))}

    def close(self) -> None:
        """Flush and close the files and finish the wandb run."""
        if not self.enabled:
            return
        if self._wandb_run is not None:
            self._wandb_run.finish()
            self._wandb_run = None
        for f in (self._text, self._jsonl):
            if f is not None and not f.closed:
                f.close()

    def __enter__(self) -> "Logger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
