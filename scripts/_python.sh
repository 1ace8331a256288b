# Sourced by the shell scripts (after setting $repo, the repository root): the Python that runs the project.
# $PYTHON if set, else the project's virtual environment (.venv/bin/python, made by scripts/setup_env.sh), else
# python3 from PATH. Activating the venv first (source .venv/bin/activate) gives the same interpreter.
if [ -n "${PYTHON:-}" ]; then
  python="$PYTHON"
elif [ -x "$repo/.venv/bin/python" ]; then
  python="$repo/.venv/bin/python"
else
  python=python3
fi
