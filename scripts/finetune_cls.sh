#!/usr/bin/env bash
# Classification fine-tuning (the protocol of Point-MAE and followers; not in the CrossPoint paper) with the DGCNN
# paper's recipe (train_cls.py defaults): ModelNet40 and the three ScanObjectNN variants, from a pretrained
# encoder, or from scratch with PRETRAINED=none.
#   bash scripts/finetune_cls.sh PRETRAINED [DATA_ROOT (default data)] [extra train_cls.py args, e.g. --seed 2]
#   PRETRAINED: runs/crosspoint_dgcnn_cls, checkpoints/official/dgcnn_cls_best.pth, or none
# Runs go to runs/cls_<dataset>[_<variant>]_<tag>/ with results.json (overall and mean class accuracy of the
# checkpoint kept on a held-out part of train, scored once on test).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/_eval_args.sh" "$@"
init=(--pretrained_path "$model_path"); tag=pretrained
[ "$model_path" = none ] && { init=(); tag=scratch; }
"$python" "$repo/train_cls.py" --dataset modelnet40 --data_root "$data_root" --exp_name "cls_modelnet40_$tag" \
  "${init[@]}" "${extra[@]}"
for variant in obj_bg obj_only pb_t50_rs; do
  "$python" "$repo/train_cls.py" --dataset scanobjectnn --variant "$variant" --data_root "$data_root" \
    --exp_name "cls_scanobjectnn_${variant}_$tag" "${init[@]}" "${extra[@]}"
done
