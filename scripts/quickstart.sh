#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv (if needed), generate the synthetic data (or reuse it),
# pretrain CrossPoint on CPU, evaluate (linear SVM, few-shot, part segmentation) and print the table.
#   bash scripts/quickstart.sh                                   # --preset small on CPU, seed 1
#   bash scripts/quickstart.sh --seeds 1 2 3 4 5 --stages pretrain eval partseg   # results/ablation.*
#   bash scripts/quickstart.sh --seeds 1 2 3 4 5 --stages pretrain cls partseg_pretrained --threads 1 \
#        --report_name ablation_finetuning                       # results/ablation_finetuning.*
#   bash scripts/quickstart.sh --portable                        # kernels every x86-64 CPU follows (1.3x slower)
#   bash scripts/quickstart.sh --preset paper --device cuda      # GPU-scale synthetic run
#   bash scripts/quickstart.sh --data_root data --device cuda    # the real archives, published settings
# Results: results/quickstart.{json,md} (one seed) or results/<report_name>.{json,md} (several), t-SNE pictures.
# --portable pins torch's CPU kernels (ATen AVX2 kernels, oneDNN capped at AVX2, MKL's COMPATIBLE branch) so
# that the training itself does not depend on the CPU's instruction sets (see
# docs/reproducibility.md); the variables must be set before Python starts, which is why this script handles the flag.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
args=()
for arg in "$@"; do
  if [ "$arg" = "--portable" ]; then
    export ATEN_CPU_CAPABILITY="${ATEN_CPU_CAPABILITY:-avx2}" ONEDNN_MAX_CPU_ISA="${ONEDNN_MAX_CPU_ISA:-AVX2}"
    export MKL_CBWR="${MKL_CBWR:-COMPATIBLE}"
  else
    args+=("$arg")
  fi
done
bash scripts/setup_env.sh
# jemalloc (if installed: apt-get install libjemalloc2) avoids page-fault overhead on large CPU tensors
# (it changes speed only: results are bitwise the same with and without it).
jemalloc=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
if [ -z "${LD_PRELOAD:-}" ] && [ -f "$jemalloc" ]; then
  export LD_PRELOAD="$jemalloc" MALLOC_CONF="${MALLOC_CONF:-dirty_decay_ms:-1,muzzy_decay_ms:-1}"
fi
exec .venv/bin/python scripts/quickstart.py "${args[@]}"
