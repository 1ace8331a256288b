"""Identify published CrossPoint checkpoints by their keys and load each strictly into this project.

    python scripts/verify_checkpoints.py checkpoints/official [more files or folders]

Prints one line per .pth file: which original module it is, and that it loaded with nothing
missing or unexpected. Exits non-zero if any file fails to load.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import build_image_encoder  # noqa: E402
from models.dgcnn import DGCNN, DGCNNPartSeg  # noqa: E402
from util.checkpoint import load_pretrained, load_state_dict_file  # noqa: E402


def identify(state_dict: dict) -> tuple[str, object]:
    """Name the original module a state dict belongs to and build the matching project model.

    Args:
        state_dict: a loaded state dict (``module.`` prefix already stripped).
    Returns:
        (description, freshly built model to load it into).
    """
    if "resnet.conv1.weight" in state_dict:
        arch = "resnet50" if state_dict["inv_head.0.weight"].shape[1] == 2048 else "resnet18"
        return f"image encoder ({arch})", build_image_encoder(arch)
    if "transform_net.transform.weight" in state_dict:
        emb_dims = state_dict["conv6.0.weight"].shape[0]
        if "conv11.weight" in state_dict:
            num_parts = state_dict["conv11.weight"].shape[0]
            return (
                f"DGCNN part-seg network, fine-tuned (emb_dims {emb_dims}, {num_parts} parts)",
                DGCNNPartSeg(k=40, emb_dims=emb_dims, num_parts=num_parts),
            )
        return f"DGCNN part-seg encoder, pretrained (emb_dims {emb_dims})", DGCNNPartSeg(k=40, emb_dims=emb_dims, pretrain=True)
    if "conv5.0.weight" in state_dict:
        emb_dims = state_dict["conv5.0.weight"].shape[0]
        return f"DGCNN classification encoder (emb_dims {emb_dims})", DGCNN(k=20, emb_dims=emb_dims)
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
            description, model = identify(state_dict)
            load_pretrained(model, state_dict)
        except (ValueError, FileNotFoundError, RuntimeError) as error:
            failures += 1
            print(f"FAIL {path}: {error}")
            continue
        print(f"ok   {path}: {description}, {len(state_dict)} tensors, loaded strictly")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
