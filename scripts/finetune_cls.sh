#!/usr/bin/env bash
# Classification fine-tuning (not in the CrossPoint paper) on ModelNet40 and the three ScanObjectNN variants,
# from a pretrained encoder, or from scratch with PRETRAINED=none, under one recipe (train_cls.py --recipe):
#   RECIPE=dgcnn (the default when RECIPE is unset): the DGCNN paper's recipe, WangYueFt/dgcnn pytorch/main.py
#     (SGD lr 0.1, momentum 0.9, wd 1e-4, cosine to 1e-3, 250 epochs, batch 32, 1024 points, label smoothing 0.2).
#   RECIPE=pointmae: the fine-tuning protocol of Point-MAE and its followers, Pang-Yatian/Point-MAE
#     cfgs/finetune_*.yaml (AdamW lr 5e-4, wd 0.05, 10 warm-up epochs then cosine, 300 epochs, batch 32,
#     gradient-norm clip 10, 2048 points on ScanObjectNN and 1024 on ModelNet40).
#   [RECIPE=dgcnn|pointmae] bash scripts/finetune_cls.sh PRETRAINED [DATA_ROOT (default data)] [extra train_cls.py args]
#   PRETRAINED: runs/crosspoint_dgcnn_cls, checkpoints/official/dgcnn_cls_best.pth, or none
# Runs go to runs/cls_<dataset>[_<variant>][_<recipe>]_<tag>/ with results.json (overall and mean class accuracy
# of the checkpoint kept on a held-out part of train, scored once on test; the references' own rule, best test
# accuracy, is --select_best_on test).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/_eval_args.sh" "$@"
init=(--pretrained_path "$model_path"); tag=pretrained
[ "$model_path" = none ] && { init=(); tag=scratch; }
recipe=(); name_tag="$tag"
if [ -n "${RECIPE:-}" ]; then
  recipe=(--recipe "$RECIPE"); name_tag="${RECIPE}_$tag"
fi
"$python" "$repo/train_cls.py" --dataset modelnet40 --data_root "$data_root" --exp_name "cls_modelnet40_$name_tag" \
  "${recipe[@]}" "${init[@]}" "${extra[@]}"
for variant in obj_bg obj_only pb_t50_rs; do
  "$python" "$repo/train_cls.py" --dataset scanobjectnn --variant "$variant" --data_root "$data_root" \
    --exp_name "cls_scanobjectnn_${variant}_$name_tag" "${recipe[@]}" "${init[@]}" "${extra[@]}"
done
