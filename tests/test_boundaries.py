"""The module map's import boundaries (README "Layout"), checked on the source of every module."""

import ast
import sys

import pytest

from conftest import REPO_ROOT

STDLIB = set(sys.stdlib_module_names) | {"__future__"}
ALLOWED = {
    "models": {"torch", "torchvision", "models"},
    # plyfile reads PLY; progress displays go through util.progress (SHARED_WITH_TQDM below), not tqdm.
    "datasets": {"numpy", "h5py", "PIL", "plyfile", "torch", "trimesh", "embreex", "datasets"},
    # util/classification.py (per-class accuracy, confusion matrix) and util/partseg.py (the part-seg figure)
    # import evaluation.
    "util": {"torch", "torchvision", "numpy", "sklearn", "scipy", "tqdm", "matplotlib", "wandb", "util", "evaluation"},
    "evaluation": {"numpy", "torch", "sklearn", "scipy", "matplotlib", "models", "datasets", "util", "evaluation"},
}
# Dependency-free modules (standard library only) that every layer may import.
SHARED = {"util.fileio", "util.meta"}
# The progress display of every command (standard library and tqdm only), which every layer may import too.
SHARED_WITH_TQDM = {"util.progress"}


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
            if top not in STDLIB and top not in ALLOWED[package] and full not in SHARED | SHARED_WITH_TQDM:
                offenders.append(f"{path.relative_to(REPO_ROOT)} imports {full}")
    assert not offenders, offenders


@pytest.mark.parametrize("module", sorted(SHARED))
def test_shared_modules_are_dependency_free(module):
    path = REPO_ROOT / (module.replace(".", "/") + ".py")
    if not path.is_file():
        pytest.skip(f"{module} does not exist")
    third_party = [full for top, full in _imports(path) if top not in STDLIB]
    assert not third_party, f"{module} must import only the standard library, imports {third_party}"


@pytest.mark.parametrize("module", sorted(SHARED_WITH_TQDM))
def test_progress_module_imports_only_the_standard_library_and_tqdm(module):
    path = REPO_ROOT / (module.replace(".", "/") + ".py")
    third_party = [full for top, full in _imports(path) if top not in STDLIB | {"tqdm"}]
    assert not third_party, f"{module} must import only the standard library and tqdm, imports {third_party}"


def test_importing_models_does_not_import_torchvision_or_data_code():
    import subprocess

    code = "import sys, models; print(sorted(m for m in ('torchvision', 'datasets', 'util') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
