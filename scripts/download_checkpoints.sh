#!/usr/bin/env bash
# Download the published CrossPoint checkpoints (plain state dicts of the original modules) from
# the original project's public Google Drive folder, then load each one strictly into the
# matching model of this project to verify it.
#   bash scripts/download_checkpoints.sh [--dir checkpoints/official]
# Needs internet access and gdown (installed by scripts/setup_env.sh).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
dest="checkpoints/official"
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dest="$2"; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "download_checkpoints: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
folder_id="10TVEIRUBCh3OPulKI4i2whYAcKVdSURn"

bash scripts/setup_env.sh >/dev/null
mkdir -p "$dest"
echo "download_checkpoints: fetching Google Drive folder $folder_id into $dest"
if ! .venv/bin/gdown --folder "https://drive.google.com/drive/folders/$folder_id" -O "$dest"; then
  echo "download_checkpoints: download failed (no internet, or Google Drive refused): retry later, or download the folder in a browser and put the .pth files into $dest" >&2
  exit 1
fi
.venv/bin/python scripts/verify_checkpoints.py "$dest"
