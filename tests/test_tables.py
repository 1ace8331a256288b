"""datasets/tables.py: the one definition of the dataset tables, and its users (no copies left)."""

import ast

import numpy as np

from conftest import REPO_ROOT
from datasets import tables

# data/README.md and the published ShapeNetPart / ScanObjectNN releases.
CATEGORIES = ("airplane", "bag", "cap", "car", "chair", "earphone", "guitar", "knife", "lamp",
              "laptop", "motorbike", "mug", "pistol", "rocket", "skateboard", "table")
PARTS = (4, 2, 2, 4, 4, 3, 3, 2, 4, 2, 6, 2, 3, 3, 3, 3)
OFFSETS = (0, 4, 6, 8, 12, 16, 19, 22, 24, 28, 30, 36, 38, 41, 44, 47)


def test_tables():
    assert tables.SHAPENET_PART_CATEGORIES == CATEGORIES
    assert tables.SHAPENET_PART_PARTS_PER_CATEGORY == PARTS
    assert tables.SHAPENET_PART_OFFSETS == OFFSETS
    assert tables.SHAPENET_PART_OFFSETS == tuple(np.cumsum((0,) + PARTS[:-1]))
    assert tables.SHAPENET_PART_NUM_PARTS == 50 and tables.SHAPENET_PART_NUM_CATEGORIES == 16
    assert len(tables.SHAPENET_PART_SYNSETS) == 16 and tables.SHAPENET_PART_SYNSETS[10] == "03790512"
    assert tables.SHAPENET_PART_ALIASES == {"motor": "motorbike"}
    assert len(tables.SCANOBJECTNN_CLASSES) == 15 and tables.SCANOBJECTNN_CLASSES[14] == "toilet"
    assert len(tables.SHAPENET_RENDER_CLASSES) == 13


def test_loader_reads_the_generators_part_ids_in_the_tables_ranges(tiny_data_root):
    """The ShapeNetPart loader reads the synthetic generator's files with the table's numbering: every
    point's part id lies in its category's range, and the training split holds every category."""
    from datasets.shapenet_part import ShapeNetPart

    ds = ShapeNetPart(tiny_data_root, split="train", num_points=256)
    seen = set()
    for i in range(len(ds)):
        _, category, pid = ds[i][:3]
        c = int(category)
        lo = tables.SHAPENET_PART_OFFSETS[c]
        assert lo <= int(pid.min()) and int(pid.max()) < lo + PARTS[c], (i, c)
        seen.add(c)
    assert seen == set(range(tables.SHAPENET_PART_NUM_CATEGORIES))


def _sources():
    skip = {".venv", "tests", ".git"}
    for path in sorted(REPO_ROOT.rglob("*.py")):
        rel = path.relative_to(REPO_ROOT)
        if not skip & set(rel.parts):
            yield rel, ast.parse(path.read_text(), filename=str(path))


def test_tables_and_ply_reader_are_defined_once():
    """No source file outside datasets/tables.py spells out a table, and one PLY reader exists."""
    spelled = {CATEGORIES, PARTS, OFFSETS, tuple(tables.SCANOBJECTNN_CLASSES)}
    copies, readers = [], []
    for rel, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) >= 15:
                try:
                    values = tuple(ast.literal_eval(node))
                except ValueError:
                    continue
                if values in spelled and rel.as_posix() != "datasets/tables.py":
                    copies.append(f"{rel}:{node.lineno}")
            if isinstance(node, ast.FunctionDef) and node.name == "read_ply_points":
                readers.append(rel.as_posix())
    assert not copies, f"tables copied outside datasets/tables.py: {copies}"
    assert readers == ["datasets/io.py"]
