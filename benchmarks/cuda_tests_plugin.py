"""pytest plugin of ``benchmarks.gpu_check``: keep only the tests that have a CUDA-only part.

    python -m pytest -p benchmarks.cuda_tests_plugin tests/

A test is kept when it carries a ``cuda`` or ``gpu`` marker, a ``skipif`` whose reason mentions CUDA
or a GPU (``@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")``), or when
its source asks ``torch.cuda.is_available()`` (a test with a branch that runs only on a GPU). Every
other test is deselected (reported as such by pytest). Loaded only with ``-p``; the test suite
itself never imports it.
"""

from __future__ import annotations

import inspect
import re

import pytest

_CUDA_WORDS = re.compile(r"cuda|gpu", re.IGNORECASE)


def is_cuda_test(item: pytest.Item) -> bool:
    """Whether the collected test ``item`` has a part that runs only with a CUDA device."""
    for mark in item.iter_markers():
        if mark.name in ("cuda", "gpu"):
            return True
        if mark.name == "skipif" and _CUDA_WORDS.search(str(mark.kwargs.get("reason", ""))):
            return True
    function = getattr(item, "function", None)
    if function is None:
        return False
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return False
    return "cuda.is_available" in source


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect every collected test that :func:`is_cuda_test` rejects."""
    kept = [item for item in items if is_cuda_test(item)]
    dropped = [item for item in items if not is_cuda_test(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept
