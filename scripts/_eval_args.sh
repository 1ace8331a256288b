# Sourced by the evaluation scripts: MODEL_PATH [DATA_ROOT] [extra args] -> $model_path $data_root $extra $python.
# DATA_ROOT may be left out before the extra arguments: an argument starting with "-" is the first extra one.
model_path="${1:?usage: bash $(basename "$0") MODEL_PATH [DATA_ROOT] [extra args]}"
if [ $# -ge 2 ] && [ "${2#-}" = "$2" ]; then
  data_root="$2"
  extra=("${@:3}")
else
  data_root=data
  extra=("${@:2}")
fi
source "$repo/scripts/_python.sh"
