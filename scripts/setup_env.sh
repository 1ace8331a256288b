#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install requirements.txt.
# Idempotent: re-installs only when requirements.txt changed. Needs only Python >= 3.10.
#   bash scripts/setup_env.sh            # uses python3 (override with PYTHON=/path/to/python)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
venv="${VENV:-$repo/.venv}"
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null 2>&1; then
  echo "setup_env: '$python' not found; install Python >= 3.10 or set PYTHON=/path/to/python" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "setup_env: creating virtual environment $venv"
  "$python" -m venv "$venv"
fi

stamp="$venv/.requirements.sha256"
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup_env: installing requirements.txt into $venv (first run takes about a minute)"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r requirements.txt
  echo "$want" > "$stamp"
fi

# Install the torchvision import hook into the venv (see util/torchvision_compat.py): every
# interpreter of the venv (pytest, notebook kernels, torchrun workers) then imports torchvision
# on CPU-only torch. It does nothing where torchvision's compiled ops load.
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp util/torchvision_compat.py "$site/crosspoint_torchvision_compat.py"
echo "import crosspoint_torchvision_compat; crosspoint_torchvision_compat.install()" \
  > "$site/crosspoint_torchvision_compat.pth"

"$venv/bin/python" - <<'PY'
import jupyterlab, torch, torchvision
print(f"setup_env: ok (torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"cuda available: {torch.cuda.is_available()}, jupyterlab {jupyterlab.__version__}: "
      ".venv/bin/jupyter lab eval_ssl.ipynb opens the SVM evaluation notebook)")
PY
