"""Make ``import torchvision`` work on CPU-only torch builds without touching CUDA installs.

The registry's torchvision 0.28.0 wheel is built for CUDA: its compiled ops library
(``torchvision/_C.so``) links ``libtorch_cuda.so``. On a CPU-only torch the library fails to
load (torchvision tolerates that), but ``torchvision/_meta_registrations.py`` then registers
fake kernels for ``torchvision::nms`` and fails with
``RuntimeError: operator torchvision::nms does not exist``.

The fix: just before torchvision is first imported, try to load its compiled ops exactly as
torchvision itself would. If they load (any working install, CUDA or CPU build), nothing else
happens. Only if ``torchvision::nms`` / ``torchvision::qnms`` still do not exist are their
schemas defined (no kernels), which lets ``import torchvision``, the model constructors and the
transforms work; calling ``torchvision.ops.nms`` then still fails, loudly.

``install()`` registers a tiny import hook and is cheap (torch is imported only when
torchvision is). ``scripts/setup_env.sh`` copies this file into the virtual environment with a
``.pth`` line so every interpreter of the venv (pytest, the notebook kernel, torchrun workers)
gets the hook; ``tests/conftest.py`` also calls ``install()``.
"""

import glob
import importlib.abc
import importlib.util
import os
import sys

_OPS_NEEDING_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

# Keeps the torch.library.Library alive: dropping it would unregister the schemas.
_LIBRARY = None


def _has_op(name: str) -> bool:
    import torch

    return hasattr(torch.ops.torchvision, name)


def _try_load_compiled_ops(package_dir: str) -> bool:
    """Load torchvision's ``_C`` library as torchvision would; True if it loaded."""
    import torch

    candidates = sorted(glob.glob(os.path.join(package_dir, "_C*.so")) + glob.glob(os.path.join(package_dir, "_C*.pyd")))
    if not candidates:
        return False
    try:
        torch.ops.load_library(candidates[0])
    except OSError:
        return False
    return True


def ensure_torchvision_ops(package_dir: str | None = None) -> list[str]:
    """Define the operator schemas torchvision needs at import time, only if they are missing.

    Args:
        package_dir: torchvision's package directory; found with importlib when None.
    Returns:
        The names of the schemas this call defined (empty where the compiled ops loaded or
        the schemas already existed).
    """
    global _LIBRARY
    import torch

    if package_dir is None:
        spec = importlib.util.find_spec("torchvision")
        if spec is None or spec.origin is None:
            return []
        package_dir = os.path.dirname(spec.origin)
    if not all(_has_op(name) for name in _OPS_NEEDING_SCHEMAS):
        _try_load_compiled_ops(package_dir)
    missing = [name for name in _OPS_NEEDING_SCHEMAS if not _has_op(name)]
    if not missing:
        return []
    if _LIBRARY is None:
        _LIBRARY = torch.library.Library("torchvision", "FRAGMENT")
    for name in missing:
        _LIBRARY.define(_OPS_NEEDING_SCHEMAS[name])
    return missing


class _TorchvisionImportHook(importlib.abc.MetaPathFinder):
    """Runs ``ensure_torchvision_ops`` once, right before ``torchvision`` is imported."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "torchvision":
            return None
        uninstall()
        ensure_torchvision_ops()
        return None  # let the normal finders import torchvision


def install() -> None:
    """Register the import hook (idempotent; a no-op once torchvision is imported)."""
    if "torchvision" in sys.modules:
        return
    if any(isinstance(finder, _TorchvisionImportHook) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionImportHook())


def uninstall() -> None:
    """Remove the import hook if present."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TorchvisionImportHook)]
