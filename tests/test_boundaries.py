"""The module map's import boundaries (ARCHITECTURE.md), checked on the source of every module."""

import ast
import sys

import pytest

from conftest import REPO_ROOT

STDLIB = set(sys.stdlib_module_names) | {"__future__"}
ALLOWED = {
    "models": {"torch", "torchvision", "models"},
    # tqdm only for the synthetic generator's progress bar (imported inside the function that uses it).
    "datasets": {"numpy", "h5py", "PIL", "torch", "trimesh", "embreex", "tqdm", "datasets"},
    "util": {"torch", "torchvision", "numpy", "sklearn", "scipy", "tqdm", "matplotlib", "wandb", "util"},
}


def _top_level_imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_stay_inside_its_boundary(package):
    offenders = []
    for path in sorted((REPO_ROOT / package).glob("*.py")):
        for name in _top_level_imports(path):
            if name not in STDLIB and name not in ALLOWED[package]:
                offenders.append(f"{path.relative_to(REPO_ROOT)} imports {name}")
    assert not offenders, offenders


def test_importing_models_does_not_import_torchvision_or_data_code():
    import subprocess

    code = "import sys, models; print(sorted(m for m in ('torchvision', 'datasets', 'util') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
