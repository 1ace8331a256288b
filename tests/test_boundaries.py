"""The module map's import boundaries (README "Layout"), checked on the source of every module."""

import ast
import sys

import pytest

from conftest import REPO_ROOT

STDLIB = set(sys.stdlib_module_names) | {"__future__"}
ALLOWED = {
    # The networks and losses: torch only (torchvision for the image encoder).
    "models": {"torch", "torchvision", "models"},
    # The data: plyfile reads PLY; progress displays go through util.progress (SHARED_WITH_TQDM below), not tqdm.
    "datasets": {"numpy", "h5py", "PIL", "plyfile", "torch", "trimesh", "embreex", "datasets"},
    # The training engine; util.weights builds the models that the weights files hold.
    "util": {"torch", "torchvision", "numpy", "tqdm", "wandb", "util", "models", "datasets"},
    # Task metrics and evaluating a model over a loader.
    "metrics": {"torch", "numpy", "metrics", "util"},
    # Frozen-feature evaluation (features, SVM, few-shot, pictures, seed statistics).
    "evaluation": {"torch", "numpy", "sklearn", "scipy", "matplotlib", "evaluation", "metrics", "models", "datasets",
                   "util"},
}
# The entry scripts: nothing imports them (shared logic lives in the packages above); tests may.
ENTRY_SCRIPTS = {"train_crossmodal", "train_partseg", "train_cls", "eval_svm", "eval_fewshot", "embed"}
# Dependency-free modules (standard library only) that every layer may import.
SHARED = {"util.fileio", "datasets.tables"}
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
    if not (REPO_ROOT / package).is_dir():
        pytest.fail(f"the package {package}/ of the module map is missing")
    offenders = []
    for path in sorted((REPO_ROOT / package).rglob("*.py")):  # subpackages included
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


def test_nothing_imports_an_entry_script():
    """Packages, scripts/ and benchmarks/ and the entry scripts themselves never import an entry script."""
    roots = [REPO_ROOT / name for name in (*ALLOWED, "scripts", "benchmarks")]
    paths = [p for root in roots for p in root.rglob("*.py")] + [REPO_ROOT / f"{name}.py" for name in ENTRY_SCRIPTS]
    offenders = [f"{path.relative_to(REPO_ROOT)} imports {full}" for path in sorted(paths)
                 for top, full in _imports(path) if top in ENTRY_SCRIPTS]
    assert not offenders, offenders
