"""The torchvision import fix: works on CPU-only torch, changes nothing where the compiled ops load."""

import subprocess
import sys
import textwrap

from conftest import REPO_ROOT


def _run(code: str) -> str:
    """Run `code` in a fresh interpreter of the test's Python (the venv's, with its .pth hook)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_import_torchvision_in_fresh_interpreter():
    out = _run(
        """
        import torch, torchvision
        from torchvision import transforms
        model = torchvision.models.resnet18(weights=None).eval()
        with torch.no_grad():
            y = model(torch.zeros(1, 3, 32, 32))
        t = transforms.Compose([transforms.Normalize([0.5] * 3, [0.5] * 3)])
        print(tuple(y.shape), tuple(t(torch.zeros(3, 4, 4)).shape))
        """
    )
    assert out == "(1, 1000) (3, 4, 4)"


def test_no_change_where_compiled_ops_load():
    """Simulate a working install: loading the compiled library registers the real schemas."""
    out = _run(
        """
        import torch
        import util.torchvision_compat as compat

        real = torch.library.Library("torchvision", "FRAGMENT")

        def fake_load(package_dir):
            for schema in compat._OPS_NEEDING_SCHEMAS.values():
                real.define(schema)
            return True

        compat._try_load_compiled_ops = fake_load
        defined = compat.ensure_torchvision_ops("/nonexistent")
        print(defined, compat._LIBRARY is None)
        """
    )
    assert out == "[] True"


def test_defines_only_missing_schemas_when_library_fails():
    out = _run(
        """
        import torch
        import util.torchvision_compat as compat

        compat._try_load_compiled_ops = lambda package_dir: False
        other = torch.library.Library("torchvision", "FRAGMENT")
        other.define(compat._OPS_NEEDING_SCHEMAS["nms"])
        print(compat.ensure_torchvision_ops("/nonexistent"), compat.ensure_torchvision_ops("/nonexistent"))
        """
    )
    assert out == "['qnms'] []"


def test_hook_is_idempotent_and_removes_itself():
    out = _run(
        """
        import sys
        import util.torchvision_compat as compat
        compat.install(); compat.install()
        n_before = sum(isinstance(f, compat._TorchvisionImportHook) for f in sys.meta_path)
        import torchvision
        n_after = sum(isinstance(f, compat._TorchvisionImportHook) for f in sys.meta_path)
        print(n_before <= 1, n_after)
        """
    )
    assert out == "True 0"
