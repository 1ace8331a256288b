"""Atomic file writes (standard library only, so every layer may import this module).

A file written here is first written to a temporary file next to its destination
(``.<name>.<random>.tmp``), flushed and fsynced, then renamed over the destination: a crash, a kill
or a full disk never leaves a partial file under the final name, and an existing file stays as it
was until the new one is complete. A full disk raises :class:`DiskFullError`, whose message names
the path, and the temporary file is removed. Temporary files left behind by a killed process are
removed by :func:`remove_stale_tmp_files`.

Also here, for the writers that own an output folder while they run (``datasets.synthetic``,
``datasets.prepare_meshes``): :func:`pid_alive` (does the process that left a lock or temporary
folder still run?) and :func:`read_json` (a state or marker file that may be absent).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["InputFileError", "DiskFullError", "atomic_write", "atomic_write_bytes", "atomic_write_text",
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
