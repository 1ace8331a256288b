#!/usr/bin/env bash
# Linear-SVM evaluation (CrossPoint Table 1: ModelNet40; Table 2: ScanObjectNN OBJ_BG) with the original
# protocol (eval_svm.py defaults: first 1024 points, C = 0.01). Features are cached, so a second run with
# another C (or --C_grid 0.001 0.01 0.1 1 --C_select cv) only refits the SVM.
#   bash scripts/eval_svm.sh MODEL_PATH [DATA_ROOT (default data)] [extra eval_svm.py args, e.g. --plot]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/_eval_args.sh" "$@"
for dataset in modelnet40 scanobjectnn; do
  "$python" "$repo/eval_svm.py" --model_path "$model_path" --data_root "$data_root" --dataset "$dataset" "${extra[@]}"
done
