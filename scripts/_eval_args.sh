# Sourced by the evaluation scripts: MODEL_PATH [DATA_ROOT] [extra args] -> $model_path $data_root $extra $python.
model_path="${1:?usage: bash $(basename "$0") MODEL_PATH [DATA_ROOT] [extra args]}"
data_root="${2:-data}"
extra=("${@:3}")
python="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$python" ] || python=python
