"""Identify published CrossPoint checkpoints by their keys and load each strictly into this project.

    python scripts/verify_checkpoints.py checkpoints/official [more files or folders]

Prints, per .pth file, which original module it is (decided by its keys, not its name), that it loaded
with nothing missing or unexpected, and the command that uses it. The published part-segmentation file
``dgcnn_partseg_best.pth`` is used by the original scripts/script.sh as ``--pretrained_path`` of the
fine-tuning: if it holds the part-seg *encoder* (no conv11), that is what it is; if it holds a fine-tuned
network (conv11 present), it is evaluated with ``train_partseg.py --eval --model_path``. Exits non-zero if
any file fails to load.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import build_image_encoder  # noqa: E402
from models.dgcnn import DGCNN, DGCNNPartSeg  # noqa: E402
from util.checkpoint import CheckpointError, load_pretrained, load_state_dict_file, read_weights_meta  # noqa: E402
from util.presets import PARTSEG_K, PRETRAIN_K  # noqa: E402


def sidecar_k(path: Path) -> tuple[int, str]:
    """The kNN size the weights were trained with: their sidecar's k (this project's files), else the published
    runs' 15 (the official files carry no sidecar). Returns (k, where it came from).

    Raises CheckpointError naming the sidecar when it is not valid."""
    k = ((read_weights_meta(path) or {}).get("model_args") or {}).get("k")  # a bad sidecar: CheckpointError
    if isinstance(k, int) and not isinstance(k, bool):
        return k, f"k from its sidecar {path.with_suffix('.json').name}"
    return PRETRAIN_K, f"no sidecar: k {PRETRAIN_K} of the published runs"


def identify(state_dict: dict, path: Path) -> tuple[str, object, str]:
    """Name the original module a state dict belongs to, build the matching project model, say how to use it.

    Args:
        state_dict: a loaded state dict (``module.`` prefix already stripped).
        path: the file (for the printed command).
    Returns:
        (description, freshly built model to load it into, the command that uses the file).
    """
    if "resnet.conv1.weight" in state_dict:
        arch = "resnet50" if state_dict["inv_head.0.weight"].shape[1] == 2048 else "resnet18"
        return (f"image encoder ({arch})", build_image_encoder(arch),
                "the image branch of pretraining; no downstream command uses it")
    if "transform_net.transform.weight" in state_dict:
        emb_dims = state_dict["conv6.0.weight"].shape[0]
        if "conv11.weight" in state_dict:
            num_parts = state_dict["conv11.weight"].shape[0]
            return (f"DGCNN part-seg network, fine-tuned (emb_dims {emb_dims}, {num_parts} parts)",
                    DGCNNPartSeg(k=PARTSEG_K, emb_dims=emb_dims, num_parts=num_parts),
                    f"python train_partseg.py --eval --model_path {path}")
        return (f"DGCNN part-seg encoder, pretrained (emb_dims {emb_dims})",
                DGCNNPartSeg(k=PARTSEG_K, emb_dims=emb_dims, pretrain=True),
                f"python train_partseg.py --pretrained_path {path}  (the original scripts/script.sh)")
    if "conv5.0.weight" in state_dict:
        emb_dims = state_dict["conv5.0.weight"].shape[0]
        k, where = sidecar_k(path)
        return (f"DGCNN classification encoder (emb_dims {emb_dims})", DGCNN(k=k, emb_dims=emb_dims),
                f"python eval_svm.py --model_path {path} --k {k}  ({where}; also eval_fewshot.py, embed.py, "
                f"train_cls.py --pretrained_path)")
    raise ValueError("not a CrossPoint checkpoint: no DGCNN, part-seg or ResNet keys (e.g. conv1.0.weight)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help=".pth files or folders holding them")
    args = parser.parse_args(argv)
    files = []
    for path in args.paths:
        files.extend(sorted(path.rglob("*.pth")) if path.is_dir() else [path])
    if not files:
        print(f"verify_checkpoints: no .pth files under {', '.join(map(str, args.paths))}", file=sys.stderr)
        return 1
    failures = 0
    for path in files:
        try:
            state_dict = load_state_dict_file(path)
            description, model, use = identify(state_dict, path)
            load_pretrained(model, state_dict)
        except (ValueError, FileNotFoundError, RuntimeError, CheckpointError) as error:
            failures += 1
            print(f"FAIL {path}: {error}")
            continue
        print(f"ok   {path}: {description}, {len(state_dict)} tensors, loaded strictly\n     use: {use}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
