#!/usr/bin/env bash
# Few-shot classification (CrossPoint Tables 3 and 4): the paper's four settings on ModelNet40 and
# ScanObjectNN, 10 runs each (paper: mean ± std over 10 runs; the original fsl_script.sh used --n_runs 50
# for one setting). Default protocol = the original eval_fewshot.py (support and query from the training
# split); add --query_split test for the stricter protocol (queries from the test split).
#   bash scripts/fsl_script.sh MODEL_PATH [DATA_ROOT] [extra eval_fewshot.py args, e.g. --query_split test]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
model_path="${1:?usage: bash scripts/fsl_script.sh MODEL_PATH [DATA_ROOT] [extra args]}"
data_root="${2:-data}"
shift $(( $# >= 2 ? 2 : 1 ))
python="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$python" ] || python=python

for dataset in modelnet40 scanobjectnn; do
  for k_way in 5 10; do
    for m_shot in 10 20; do
      "$python" "$repo/eval_fewshot.py" --model_path "$model_path" --data_root "$data_root" \
        --dataset "$dataset" --k_way "$k_way" --m_shot "$m_shot" --n_query 20 --n_runs 10 --seed 0 \
        --no_progress "$@"
    done
  done
done
