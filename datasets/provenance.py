"""Where the data under a root came from: the synthetic generator's marker file, or real data.

Every entry script labels its reported numbers with :func:`data_kind` ("synthetic" / "real"); the
quickstart reads the generator's seed back with :func:`data_seed`. ``datasets.synthetic`` writes the
marker ``SYNTHETIC.json`` last, so a root holds it only once its synthetic data is complete.
"""

from __future__ import annotations

import os
from pathlib import Path

from util.fileio import read_json

MARKER = "SYNTHETIC.json"


def data_kind(root: str | os.PathLike) -> str:
    """"synthetic" when ``root`` holds the synthetic generator's marker file, else "real" (labels reported numbers)."""
    return "synthetic" if (Path(root) / MARKER).is_file() else "real"


def data_seed(root: str | os.PathLike) -> int | None:
    """The seed the synthetic data under ``root`` was generated with (its marker's ``seed``); None for real data
    (no marker) or a marker without a seed. An unreadable marker raises InputFileError naming it."""
    marker = read_json(Path(root) / MARKER, hint="delete it or rerun with --force")
    seed = marker.get("seed") if isinstance(marker, dict) else None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None
