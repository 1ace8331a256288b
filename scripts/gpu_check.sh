#!/usr/bin/env bash
# One command that proves a GPU (about 7.5 minutes on one CUDA GPU): the CUDA tests, the full CrossPoint
# step at batch 20 in fp32/bf16/fp16 for both EdgeConv formulations (time and max_memory_allocated),
# fast-vs-plain agreement, and a paper-shaped 2-epoch run killed after epoch 1 and resumed.
#   bash scripts/gpu_check.sh                                   # writes benchmarks/results/gpu_check.json
#   bash scripts/gpu_check.sh --data_root data/synthetic_small  # reuse synthetic data (else generated: trimesh, embreex)
#   bash scripts/gpu_check.sh --device cpu --smoke --out /tmp/gpu_check.json   # the code path at tiny sizes
# Without a CUDA GPU it prints one line and exits 0. Python: $PYTHON, else .venv/bin/python, else python3.
# Details: benchmarks/gpu_check.py and benchmarks/README.md.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
source scripts/_python.sh
exec "$python" -m benchmarks.gpu_check "$@"
