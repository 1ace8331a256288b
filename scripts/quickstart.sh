#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv (if needed), generate the synthetic data (or reuse it),
# pretrain CrossPoint on CPU, evaluate (linear SVM, few-shot, part segmentation) and print the table.
#   bash scripts/quickstart.sh                                   # --preset small on CPU, ~10 min on 2 cores
#   bash scripts/quickstart.sh --preset full --device cuda       # GPU-scale synthetic run
#   bash scripts/quickstart.sh --data_root data --device cuda    # the real archives, published settings
# Results: results/quickstart.{json,md} and results/quickstart_tsne_*.png
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup_env.sh
# jemalloc (if installed: apt-get install libjemalloc2) avoids page-fault overhead on large CPU tensors.
jemalloc=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
if [ -z "${LD_PRELOAD:-}" ] && [ -f "$jemalloc" ]; then
  export LD_PRELOAD="$jemalloc" MALLOC_CONF="${MALLOC_CONF:-dirty_decay_ms:-1,muzzy_decay_ms:-1}"
fi
exec .venv/bin/python scripts/quickstart.py "$@"
