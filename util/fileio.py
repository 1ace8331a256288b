"""Atomic file writes (standard library only, so every layer may import this module).

A file written here is first written to a temporary file next to its destination
(``.<name>.<random>.tmp``), flushed and fsynced, then renamed over the destination: a crash, a kill
or a full disk never leaves a partial file under the final name, and an existing file stays as it
was until the new one is complete. A full disk raises :class:`DiskFullError`, whose message names
the path, and the temporary file is removed. Temporary files left behind by a killed process are
removed by :func:`remove_stale_tmp_files`.

Also here, for the writers that own an output folder while they run (training runs,
``datasets.synthetic``, ``datasets.prepare_meshes``): :class:`DirLock` (one process per folder: a lock
file holding pid, host and start time), :func:`pid_alive` (does the process that left a lock or
temporary folder still run?) and :func:`read_json` (a state or marker file that may be absent).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["InputFileError", "DiskFullError", "DirLock", "LockHeldError",
           "atomic_write", "atomic_write_bytes", "atomic_write_text",
           "remove_stale_tmp_files", "TMP_SUFFIX", "pid_alive", "read_json", "user_errors"]

TMP_SUFFIX = ".tmp"
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}


class InputFileError(ValueError):
    """A file the user passed (data, checkpoint, mesh) is missing, unreadable or malformed.

    The message names the file and what is wrong; command-line scripts print it without a traceback.
    ``datasets.io.DatasetError`` and ``util.checkpoint.CheckpointError`` derive from it.
    """


@contextlib.contextmanager
def user_errors(prog: str) -> Iterator[None]:
    """Turn an error caused by the user's files (a bad checkpoint, dataset or path) into one message line:
    ``SystemExit("<prog>: error: <message>")``, no traceback."""
    try:
        yield
    except (InputFileError, FileNotFoundError, NotADirectoryError) as err:
        raise SystemExit(f"{prog}: error: {err}") from err


class DiskFullError(OSError):
    """Writing ``path`` failed because its file system is full (or a quota / file-size limit was hit)."""

    def __init__(self, path: str | os.PathLike, cause: OSError) -> None:
        self.path = Path(path)
        reason = os.strerror(cause.errno) if cause.errno else str(cause)
        super().__init__(
            cause.errno,
            f"no space left on the device holding {self.path} ({reason}); the file was not written and "
            f"the previous version, if any, is unchanged. Free disk space (or point the output elsewhere) "
            "and run the command again.",
        )

    def __str__(self) -> str:
        return str(self.args[1])


def _fsync_dir(directory: Path) -> None:
    """Persist a rename in ``directory`` (best effort: not every OS/filesystem allows it)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # Some filesystems (network, some containers) refuse fsync on directories.
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(binary_file)`` on a temporary file next to ``path``, fsync it, rename it to ``path``.

    The file gets the permissions a plain ``open()`` would give it (0666 & ~umask). On any error the
    temporary file is removed and an existing ``path`` is left untouched; a full disk is reported as
    :class:`DiskFullError` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException as error:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        if isinstance(error, OSError) and error.errno in _DISK_FULL and not isinstance(error, DiskFullError):
            raise DiskFullError(path, error) from error
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_tmp_files(directory: str | os.PathLike) -> list[Path]:
    """Delete the ``.<name>.<random>.tmp`` files that an interrupted :func:`atomic_write` left in ``directory``.

    Call it when a run (re)starts, before anything writes there. Returns the removed paths.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for p in sorted(directory.iterdir()):
        if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX) and p.is_file():
            p.unlink()
            removed.append(p)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_json(path: str | os.PathLike, error: type[Exception] = InputFileError, hint: str = "") -> Any:
    """The parsed content of the JSON file ``path``, or None when it does not exist.

    Raises ``error`` (an exception class taking a message) naming ``path`` when the file is not valid
    UTF-8 JSON; ``hint`` (what to do about it) ends the message.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path} is not valid JSON ({e})" + (f"; {hint}" if hint else "")) from e


class LockHeldError(RuntimeError):
    """Another live process holds a :class:`DirLock`; the message names it (pid, host, start) and what to do."""


def _holder_text(holder: dict[str, Any]) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    job = f", SLURM job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return f"pid {holder.get('pid')} on host {holder.get('host') or '?'} (started {when}{job})"


class DirLock:
    """A lock file that lets one process at a time own a folder (a run directory, a prepared data root).

    The file holds JSON ``{"pid", "host", "started", "slurm_job_id", "argv"}`` and is created atomically
    (written under a temporary name, then hard-linked to ``path``, which fails when it exists), so a reader
    never sees a half-written lock. Taking a lock that exists:

    - held by a live process on this host: refused (:class:`LockHeldError` naming pid and host);
    - held by a dead process on this host: taken over (``acquire`` returns a note saying so);
    - held by an earlier run of the same SLURM job (a requeued job keeps its id; it cannot run twice at
      once): taken over, whatever the host;
    - held by a process on another host: refused (its liveness cannot be checked from here), with the advice
      to delete the lock file if that job is surely gone;
    - unreadable (not JSON): taken over with a note. A bare pid (the older format) counts as this host's.

    Args:
        path: the lock file.
        what: what the holder does, for messages ("a training run", "a prepare_meshes run").
    """

    def __init__(self, path: str | os.PathLike, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self.held = False

    def _read(self) -> dict[str, Any] | None:
        """The holder, {} for an unreadable file, None when the file is gone."""
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            return {}
        if text.isdigit():
            return {"pid": int(text), "host": socket.gethostname()}
        try:
            holder = json.loads(text)
        except json.JSONDecodeError:
            return {}
        return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else {}

    def _stale_reason(self, holder: dict[str, Any]) -> str:
        """Why ``holder`` may be taken over; raises LockHeldError when it may not."""
        if not holder:
            return "an unreadable lock file"
        here, job = socket.gethostname(), os.environ.get("SLURM_JOB_ID")
        same_host = holder.get("host") == here
        if same_host and holder["pid"] == os.getpid():
            return "this process's own lock"
        if same_host and not pid_alive(holder["pid"]):
            return f"a lock of {_holder_text(holder)}, which no longer runs"
        if job and holder.get("slurm_job_id") == job and not same_host:
            return f"a lock of an earlier run of this SLURM job ({_holder_text(holder)})"
        if same_host:
            raise LockHeldError(f"{self.path.parent} is in use by {self.what}: {_holder_text(holder)}. Nothing "
                                "was changed; wait for it to end (or stop it) and run the command again.")
        raise LockHeldError(f"{self.path.parent} is in use by {self.what} on another host: {_holder_text(holder)}. "
                            f"Nothing was changed. If that job is surely gone, delete {self.path} and run the "
                            "command again.")

    def acquire(self) -> str | None:
        """Take the lock. Returns None, or a line saying whose stale lock was taken over (to log).

        Raises:
            LockHeldError: another live process holds it (see the class docstring).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
              "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "argv": list(sys.argv)}
        note = None
        for _ in range(3):
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=TMP_SUFFIX)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(json.dumps(me) + "\n")
                os.link(tmp, self.path)
                self.held = True
                return note
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
            holder = self._read()
            if holder is None:
                continue  # released meanwhile
            note = f"Took over {self.path}: {self._stale_reason(holder)}."
            self.path.unlink(missing_ok=True)
        raise LockHeldError(f"{self.path}: cannot take the lock (other processes keep taking it)")

    def release(self) -> None:
        """Remove the lock file if this process holds it (never another process's lock)."""
        if not self.held:
            return
        self.held = False
        holder = self._read()
        if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "DirLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
