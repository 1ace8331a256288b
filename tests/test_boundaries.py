"""The module map's import boundaries (README "Layout"), checked on the source of every module."""

import ast
import sys

import pytest

from conftest import REPO_ROOT

STDLIB = set(sys.stdlib_module_names) | {"__future__"}
ALLOWED = {
    "models": {"torch", "torchvision", "models"},
    # tqdm only for progress bars (imported inside the functions that use them); plyfile reads PLY.
    "datasets": {"numpy", "h5py", "PIL", "plyfile", "torch", "trimesh", "embreex", "tqdm", "datasets"},
    "util": {"torch", "torchvision", "numpy", "sklearn", "scipy", "tqdm", "matplotlib", "wandb", "util"},
}
# Dependency-free modules (standard library only) that every layer may import.
SHARED = {"util.fileio", "util.meta"}


def _imports(path):
    """(top-level package, full module name) of every absolute import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name.split(".")[0], alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.module


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_stay_inside_its_boundary(package):
    offenders = []
    for path in sorted((REPO_ROOT / package).glob("*.py")):
        for top, full in _imports(path):
            if top not in STDLIB and top not in ALLOWED[package] and full not in SHARED:
                offenders.append(f"{path.relative_to(REPO_ROOT)} imports {full}")
    assert not offenders, offenders


@pytest.mark.parametrize("module", sorted(SHARED))
def test_shared_modules_are_dependency_free(module):
    path = REPO_ROOT / (module.replace(".", "/") + ".py")
    if not path.is_file():
        pytest.skip(f"{module} does not exist")
    third_party = [full for top, full in _imports(path) if top not in STDLIB]
    assert not third_party, f"{module} must import only the standard library, imports {third_party}"


def test_importing_models_does_not_import_torchvision_or_data_code():
    import subprocess

    code = "import sys, models; print(sorted(m for m in ('torchvision', 'datasets', 'util') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
