#!/usr/bin/env bash
# Linear-SVM evaluation (CrossPoint Table 1: ModelNet40; Table 2: ScanObjectNN OBJ_BG), C=0.01 as in the
# original eval_ssl.ipynb. Features are cached next to the checkpoint, so a second run with another
# --C (or --C_grid 0.001 0.01 0.1 1) only refits the SVM.
#   bash scripts/eval_svm.sh MODEL_PATH [DATA_ROOT] [extra eval_svm.py args, e.g. --plot]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
model_path="${1:?usage: bash scripts/eval_svm.sh MODEL_PATH [DATA_ROOT] [extra args]}"
data_root="${2:-data}"
shift $(( $# >= 2 ? 2 : 1 ))
python="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$python" ] || python=python

for dataset in modelnet40 scanobjectnn; do
  "$python" "$repo/eval_svm.py" --model_path "$model_path" --data_root "$data_root" --dataset "$dataset" \
    --num_points 1024 --C 0.01 "$@"
done
