#!/usr/bin/env bash
# Set up the environment (if needed) and run the whole test suite, slow tests included.
#   bash scripts/run_tests.sh [extra pytest args, e.g. -m "not slow" or -k loss]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup_env.sh
exec .venv/bin/python -m pytest "$@"
