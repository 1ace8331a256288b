#!/usr/bin/env bash
# Download the five published CrossPoint data archives with gdown, identify each one by its
# contents, unpack it into the data root, and validate the result with `python -m datasets.check`.
#
#   bash data/download_data.sh [--root DIR] [--download-dir DIR] [--folder] [--remove-archives]
#                              [--skip-check]
#   bash data/download_data.sh --archives DIR [--root DIR] ...   # no download: unpack DIR/*.tar.gz
#
# See data/README.md for the resulting tree.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(dirname "$SCRIPT_DIR")"

# Google Drive file ids of shapenet.tar.gz, shapenet_render.tar.gz, scanobjectnn.tar.gz,
# modelnet40.tar.gz and shapenet_part.tar.gz (which id holds which archive is not relied on).
FILE_IDS=(
  1F9XIhF1qngLt-GtdnOnXiTsXH84YtrbC
  1UUY729-4VK_igjKUzLn_ygm3LxwW23pX
  1r3nJ6gEu6cL59h7cIfMrBeY5p1P_JiIV
  15lmtRaHvVIPLOp_o7rms8e6VQp_en8WF
  1-Yhqgi7KH6guIej_4X8pciiybQB4pBWQ
)
FOLDER_ID=1dAH9R3XDV0z69Bz6lBaftmJJyuckbPmR  # the Drive folder holding the same archives

# Top-level folders of the data root, and ScanObjectNN's inner folders (unpacked under ScanObjectNN/).
KNOWN=(ShapeNet ShapeNetRendering ScanObjectNN modelnet40_ply_hdf5_2048 shapenet_part_seg_hdf5_data)
SCANOBJECTNN_INNER=(main_split main_split_nobg h5_files)

ROOT="$SCRIPT_DIR"
ARCHIVES=""
DOWNLOAD_DIR=""
USE_FOLDER=0
REMOVE_ARCHIVES=0
SKIP_CHECK=0

usage() {
  cat <<EOF
Usage: bash data/download_data.sh [options]

Downloads the CrossPoint archives (ShapeNetRender point clouds and renderings, ModelNet40,
ScanObjectNN, ShapeNetPart) with gdown, unpacks each into the data root according to what it
contains, then runs \`python -m datasets.check --root ROOT\`.

Options:
  --root DIR          data root to unpack into (default: $SCRIPT_DIR)
  --archives DIR      do not download: unpack the *.tar.gz / *.tgz / *.tar files found in DIR
  --download-dir DIR  where downloaded archives are kept (default: ROOT/downloads); finished
                      downloads are not fetched again
  --folder            download the whole Drive folder ($FOLDER_ID) instead of the five file ids
  --remove-archives   delete each archive after it was unpacked
  --skip-check        do not run python -m datasets.check afterwards
  -h, --help          show this help

Environment: PYTHON (interpreter for gdown and the check; default: .venv/bin/python if present,
else python3).
EOF
}

die() { echo "download_data.sh: error: $*" >&2; exit 1; }
info() { echo "download_data.sh: $*"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --root) [[ $# -ge 2 ]] || die "--root needs a directory"; ROOT="$2"; shift 2 ;;
    --archives) [[ $# -ge 2 ]] || die "--archives needs a directory"; ARCHIVES="$2"; shift 2 ;;
    --download-dir) [[ $# -ge 2 ]] || die "--download-dir needs a directory"; DOWNLOAD_DIR="$2"; shift 2 ;;
    --folder) USE_FOLDER=1; shift ;;
    --remove-archives) REMOVE_ARCHIVES=1; shift ;;
    --skip-check) SKIP_CHECK=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then PYTHON="$REPO_ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

mkdir -p "$ROOT" || die "cannot create data root $ROOT"
ROOT="$(cd "$ROOT" && pwd)"

in_list() {  # in_list NAME ITEM... -> 0 when NAME is one of the items
  local name="$1"; shift
  local x
  for x in "$@"; do [[ "$x" == "$name" ]] && return 0; done
  return 1
}

# ------------------------------------------------------------------------------------------------
# Download
# ------------------------------------------------------------------------------------------------
download_all() {
  local gdown_cmd=()
  if command -v gdown >/dev/null 2>&1; then
    gdown_cmd=(gdown)
  elif "$PYTHON" -c "import gdown" >/dev/null 2>&1; then
    gdown_cmd=("$PYTHON" -m gdown)
  else
    die "gdown not found (neither on PATH nor importable by $PYTHON). Install it with \`pip install gdown\` (it is in requirements.txt)."
  fi
  DOWNLOAD_DIR="${DOWNLOAD_DIR:-$ROOT/downloads}"
  mkdir -p "$DOWNLOAD_DIR"
  if [[ $USE_FOLDER -eq 1 ]]; then
    info "downloading Drive folder $FOLDER_ID into $DOWNLOAD_DIR/folder"
    "${gdown_cmd[@]}" --folder "https://drive.google.com/drive/folders/$FOLDER_ID" -O "$DOWNLOAD_DIR/folder" \
      || die "download of Drive folder $FOLDER_ID failed (network, quota, or the folder moved). Re-run to resume, or download the archives by hand and use --archives DIR."
    ARCHIVES="$DOWNLOAD_DIR/folder"
    return
  fi
  local id dest
  for id in "${FILE_IDS[@]}"; do
    dest="$DOWNLOAD_DIR/$id"
    if [[ -f "$dest/.complete" ]]; then
      info "already downloaded: $id ($(ls "$dest"))"
      continue
    fi
    mkdir -p "$dest"
    info "downloading Drive file $id into $dest/"
    "${gdown_cmd[@]}" --continue "$id" -O "$dest/" \
      || die "download of Drive file $id failed (network, quota, or the file moved). Re-run to resume, or download it by hand and use --archives DIR."
    local n
    n=$(find "$dest" -maxdepth 1 -type f ! -name '.complete' | wc -l)
    [[ "$n" -ge 1 ]] || die "download of Drive file $id produced no file in $dest"
    touch "$dest/.complete"
  done
  ARCHIVES="$DOWNLOAD_DIR"
}

# ------------------------------------------------------------------------------------------------
# Identify and unpack
# ------------------------------------------------------------------------------------------------
# Prints the distinct first path components of the entries listed in file $1, after stripping
# $2 leading components; ignores "./", macOS metadata (__MACOSX, ._*) and empty names.
top_entries() {
  local listing="$1" strip="$2"
  sed -e 's#^\(\./\)*##' "$listing" \
    | awk -F/ -v s="$strip" '{ if (NF > s) print $(s + 1) }' \
    | grep -v -e '^$' -e '^\.$' -e '^__MACOSX$' -e '^\._' \
    | sort -u || true
}

unpack_archive() {
  local archive="$1"
  local listing
  listing="$(mktemp)"
  tar -tf "$archive" > "$listing" 2>/dev/null \
    || { rm -f "$listing"; die "cannot list $archive: not a readable tar archive (incomplete download?). Delete it and re-run."; }

  local strip tops name recognised=() inner=() unknown=()
  for strip in 0 1; do
    recognised=(); inner=(); unknown=()
    mapfile -t tops < <(top_entries "$listing" "$strip")
    for name in "${tops[@]}"; do
      if in_list "$name" "${KNOWN[@]}"; then recognised+=("$name")
      elif in_list "$name" "${SCANOBJECTNN_INNER[@]}"; then inner+=("$name")
      else unknown+=("$name"); fi
    done
    # Accept this depth when it names a dataset folder; a single wrapping folder is stripped.
    if [[ ${#recognised[@]} -gt 0 || ${#inner[@]} -gt 0 ]]; then break; fi
    if [[ $strip -eq 0 && ${#tops[@]} -ne 1 ]]; then break; fi
  done
  # GNU tar counts a leading "./" as a component for --strip-components.
  local tar_strip="$strip"
  if [[ $strip -gt 0 ]] && head -n 1 "$listing" | grep -q '^\./'; then tar_strip=$((strip + 1)); fi
  rm -f "$listing"
  if [[ ${#recognised[@]} -eq 0 && ${#inner[@]} -eq 0 ]]; then
    die "unrecognised archive $archive: its top-level entries (${tops[*]:-none}) contain none of ${KNOWN[*]} (nor ScanObjectNN's ${SCANOBJECTNN_INNER[*]})"
  fi

  local dest="$ROOT" what
  if [[ ${#recognised[@]} -gt 0 ]]; then
    what="${recognised[*]}"
    [[ ${#inner[@]} -eq 0 ]] || unknown+=("${inner[@]}")
  else
    dest="$ROOT/ScanObjectNN"  # the archive holds main_split/... without the ScanObjectNN/ folder
    what="ScanObjectNN (${inner[*]})"
  fi
  [[ ${#unknown[@]} -eq 0 ]] || info "note: $archive also holds ${unknown[*]} (unpacked as well)"
  mkdir -p "$dest"
  info "$(basename "$archive"): holds $what -> unpacking into $dest"
  tar -xf "$archive" -C "$dest" --strip-components="$tar_strip" --no-same-owner \
      --exclude='__MACOSX' --exclude='._*' \
    || die "unpacking $archive into $dest failed (disk full or corrupt archive?)"
  if [[ $REMOVE_ARCHIVES -eq 1 ]]; then rm -f "$archive"; fi
}

DOWNLOADED=0
if [[ -z "$ARCHIVES" ]]; then
  download_all
  DOWNLOADED=1
fi
[[ -d "$ARCHIVES" ]] || die "archive directory $ARCHIVES does not exist"

mapfile -t archive_files < <(find "$ARCHIVES" -maxdepth 2 -type f \( -name '*.tar.gz' -o -name '*.tgz' -o -name '*.tar' \) | sort)
[[ ${#archive_files[@]} -gt 0 ]] || die "no *.tar.gz, *.tgz or *.tar archive in $ARCHIVES"
for a in "${archive_files[@]}"; do
  unpack_archive "$a"
done

missing=()
for d in "${KNOWN[@]}"; do
  [[ -d "$ROOT/$d" ]] || missing+=("$d")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  [[ $DOWNLOADED -eq 0 ]] || die "after downloading and unpacking, $ROOT lacks: ${missing[*]} (an archive may have changed; check the listing above)"
  info "warning: after unpacking, $ROOT lacks: ${missing[*]}"
else
  info "all five dataset folders are present in $ROOT"
fi

if [[ $SKIP_CHECK -eq 0 ]]; then
  info "validating with: $PYTHON -m datasets.check --root $ROOT"
  (cd "$REPO_ROOT" && "$PYTHON" -m datasets.check --root "$ROOT") \
    || die "datasets.check found a problem in $ROOT (see above)"
fi
info "done: data root $ROOT"
