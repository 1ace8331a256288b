"""util/meta.py: the one definition of the dataset tables, and its users (no copies left)."""

import ast

import numpy as np

from conftest import REPO_ROOT
from util import meta

# data/README.md and the published ShapeNetPart / ScanObjectNN releases.
CATEGORIES = ("airplane", "bag", "cap", "car", "chair", "earphone", "guitar", "knife", "lamp",
              "laptop", "motorbike", "mug", "pistol", "rocket", "skateboard", "table")
PARTS = (4, 2, 2, 4, 4, 3, 3, 2, 4, 2, 6, 2, 3, 3, 3, 3)
OFFSETS = (0, 4, 6, 8, 12, 16, 19, 22, 24, 28, 30, 36, 38, 41, 44, 47)


def test_tables():
    assert meta.SHAPENET_PART_CATEGORIES == CATEGORIES
    assert meta.SHAPENET_PART_PARTS_PER_CATEGORY == PARTS
    assert meta.SHAPENET_PART_OFFSETS == OFFSETS
    assert meta.SHAPENET_PART_OFFSETS == tuple(np.cumsum((0,) + PARTS[:-1]))
    assert meta.SHAPENET_PART_NUM_PARTS == 50 and meta.SHAPENET_PART_NUM_CATEGORIES == 16
    assert len(meta.SHAPENET_PART_SYNSETS) == 16 and meta.SHAPENET_PART_SYNSETS[10] == "03790512"
    assert meta.SHAPENET_PART_ALIASES == {"motor": "motorbike"}
    assert len(meta.SCANOBJECTNN_CLASSES) == 15 and meta.SCANOBJECTNN_CLASSES[14] == "toilet"
    assert len(meta.SHAPENET_RENDER_CLASSES) == 13


def test_every_user_takes_the_tables_from_util_meta():
    import datasets
    from datasets import scanobjectnn, shapenet_part, synthetic
    from util import metrics

    for mod in (shapenet_part, datasets, metrics):
        assert mod.CATEGORIES is meta.SHAPENET_PART_CATEGORIES
        assert mod.PARTS_PER_CATEGORY is meta.SHAPENET_PART_PARTS_PER_CATEGORY
        assert mod.PART_OFFSETS is meta.SHAPENET_PART_OFFSETS
        assert mod.NUM_PARTS == 50
    assert shapenet_part.NUM_CATEGORIES == 16
    assert shapenet_part._ALIASES is meta.SHAPENET_PART_ALIASES
    assert synthetic.PARTS_PER_CATEGORY is meta.SHAPENET_PART_PARTS_PER_CATEGORY
    assert synthetic.PART_OFFSETS is meta.SHAPENET_PART_OFFSETS
    assert [n.lower() for n, _, _ in synthetic.SHAPENET_PART_CATEGORIES] == list(CATEGORIES)
    assert synthetic.SCANOBJECTNN_CLASSES is meta.SCANOBJECTNN_CLASSES
    assert synthetic.SHAPENET_RENDER_CLASSES is meta.SHAPENET_RENDER_CLASSES
    # historical type: a list
    assert scanobjectnn.SCANOBJECTNN_CLASSES == list(meta.SCANOBJECTNN_CLASSES)
    assert datasets.SCANOBJECTNN_CLASSES is scanobjectnn.SCANOBJECTNN_CLASSES


def _sources():
    skip = {".venv", "tests", ".git"}
    for path in sorted(REPO_ROOT.rglob("*.py")):
        rel = path.relative_to(REPO_ROOT)
        if not skip & set(rel.parts):
            yield rel, ast.parse(path.read_text(), filename=str(path))


def test_tables_and_ply_reader_are_defined_once():
    """No source file outside util/meta.py spells out a table, and one PLY reader exists."""
    tables = {CATEGORIES, PARTS, OFFSETS, tuple(meta.SCANOBJECTNN_CLASSES)}
    copies, readers = [], []
    for rel, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) >= 15:
                try:
                    values = tuple(ast.literal_eval(node))
                except ValueError:
                    continue
                if values in tables and rel.as_posix() != "util/meta.py":
                    copies.append(f"{rel}:{node.lineno}")
            if isinstance(node, ast.FunctionDef) and node.name == "read_ply_points":
                readers.append(rel.as_posix())
    assert not copies, f"tables copied outside util/meta.py: {copies}"
    assert readers == ["datasets/io.py"]
