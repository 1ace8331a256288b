#!/usr/bin/env bash
# Few-shot classification (CrossPoint Tables 3 and 4): the paper's four settings on ModelNet40 and
# ScanObjectNN, 10 runs each, every stored point of each cloud fed to the encoder (as the original, whose
# --num_points flag was unused; pass --num_points 1024 to cut). Default protocol = the original (support and
# query from the training split); add --query_split test for the stricter protocol (queries from test).
# Each result reports mean ± std (population, as the original) and the standard error of the mean.
#   bash scripts/fsl_script.sh MODEL_PATH [DATA_ROOT (default data)] [extra eval_fewshot.py args]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/_eval_args.sh" "$@"
for dataset in modelnet40 scanobjectnn; do
  for k_way in 5 10; do
    for m_shot in 10 20; do
      "$python" "$repo/eval_fewshot.py" --model_path "$model_path" --data_root "$data_root" --dataset "$dataset" \
        --k_way "$k_way" --m_shot "$m_shot" --seed 0 --no_progress "${extra[@]}"
    done
  done
done
