#!/usr/bin/env bash
# The paper's commands (scripts/script.sh of the original CrossPoint repository), for this code base.
# Run from the repository root with the data under data/ (see data/README.md):
#   bash scripts/script.sh            # runs every command below in order (days on one GPU)
# or copy a single command. The published settings are each script's defaults (--preset paper, listed
# in util/presets.py and in each script's --help); nothing is restated here. Each run writes
# runs/<exp_name>/ (config.json, log.txt, metrics.jsonl, checkpoints/); a killed run continues with
# --resume runs/<exp_name>, and an existing run is never overwritten without --overwrite.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
source scripts/_python.sh  # $PYTHON, else .venv/bin/python, else python3

# Pretraining CrossPoint for classification (DGCNN encoder, ResNet-50 image encoder, k 15).
# Original: python train_crosspoint.py --model dgcnn --epochs 100 --lr 0.001 --exp_name crosspoint_dgcnn_cls \
#           --batch_size 20 --print_freq 200 --k 15
# Differences: the best epoch is chosen on a held-out part of the ModelNet40 train split; add
# --select_best_on test for the original's choice by test accuracy. Multi-GPU: replace "$python" by
# "torchrun --standalone --nproc_per_node N" (--batch_size stays the global batch).
"$python" train_crossmodal.py --preset paper --model dgcnn --exp_name crosspoint_dgcnn_cls --print_freq 200

# Pretraining CrossPoint for part segmentation (the DGCNN part-segmentation encoder).
# Original: python train_crosspoint.py --model dgcnn_seg --epochs 100 --lr 0.001 --exp_name crosspoint_dgcnn_seg \
#           --batch_size 20 --print_freq 200 --k 15
"$python" train_crossmodal.py --preset paper --model dgcnn_seg --exp_name crosspoint_dgcnn_seg --print_freq 200

# Fine-tuning for part segmentation on ShapeNetPart, from the dgcnn_seg pretraining above (k 40, 300 epochs,
# SGD 0.1 = the original's 0.001 x 100, cosine to 1e-3, batch 8).
# Original: python train_partseg.py --exp_name dgcnn_partseg --pretrained_path dgcnn_partseg_best.pth \
#           --batch_size 8 --k 40 --test_batch_size 8 --epochs 300
# To start from the published pretraining file instead: --pretrained_path checkpoints/official/dgcnn_partseg_best.pth
# (scripts/verify_checkpoints.py says whether that file is an encoder, as the original uses it).
# Differences: the kept checkpoint is chosen on a held-out 5% of train+val; --select_best_on test restores the
# original's rule. Results: runs/dgcnn_partseg/results.json.
"$python" train_partseg.py --preset paper --exp_name dgcnn_partseg --pretrained_path runs/crosspoint_dgcnn_seg --plot

# Frozen-feature evaluation of the classification pretraining (Tables 1-4 of the paper).
bash scripts/eval_svm.sh runs/crosspoint_dgcnn_cls/checkpoints/point_encoder_best.pth data
bash scripts/fsl_script.sh runs/crosspoint_dgcnn_cls/checkpoints/point_encoder_best.pth data
