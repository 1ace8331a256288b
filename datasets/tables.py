"""Dataset tables (class lists, part numbering), defined once for the whole project.

Standard library only, so every layer may import it (``tests/test_boundaries.py`` checks both).
``datasets.shapenet_part`` and ``datasets.scanobjectnn`` export them under short names
(``CATEGORIES``, ``PART_OFFSETS``, ...); the part-segmentation metrics take their default part table
from here.

ShapeNetPart (see data/README.md): 16 categories in the order of ``all_object_categories.txt``
(label i -> ``SHAPENET_PART_CATEGORIES[i]``), 50 parts whose global ids are contiguous in that
order: category c owns ids ``SHAPENET_PART_OFFSETS[c] ... SHAPENET_PART_OFFSETS[c] +
SHAPENET_PART_PARTS_PER_CATEGORY[c] - 1``.
"""

from __future__ import annotations

from itertools import accumulate

__all__ = [
    "SHAPENET_PART_CATEGORIES", "SHAPENET_PART_SYNSETS", "SHAPENET_PART_PARTS_PER_CATEGORY",
    "SHAPENET_PART_OFFSETS", "SHAPENET_PART_NUM_PARTS", "SHAPENET_PART_NUM_CATEGORIES",
    "SHAPENET_PART_ALIASES", "SCANOBJECTNN_CLASSES", "SHAPENET_RENDER_CLASSES",
]

# ShapeNetPart category names, lower case, in label order (all_object_categories.txt capitalises
# them: "Airplane", ..., "Table").
SHAPENET_PART_CATEGORIES: tuple[str, ...] = (
    "airplane", "bag", "cap", "car", "chair", "earphone", "guitar", "knife",
    "lamp", "laptop", "motorbike", "mug", "pistol", "rocket", "skateboard", "table",
)
# The ShapeNet synset id of each category (second column of all_object_categories.txt).
SHAPENET_PART_SYNSETS: tuple[str, ...] = (
    "02691156", "02773838", "02954340", "02958343", "03001627", "03261776", "03467517", "03624134",
    "03636649", "03642806", "03790512", "03797390", "03948459", "04099429", "04225987", "04379243",
)
SHAPENET_PART_PARTS_PER_CATEGORY: tuple[int, ...] = (4, 2, 2, 4, 4, 3, 3, 2, 4, 2, 6, 2, 3, 3, 3, 3)
# First global part id of each category:
# (0, 4, 6, 8, 12, 16, 19, 22, 24, 28, 30, 36, 38, 41, 44, 47).
SHAPENET_PART_OFFSETS: tuple[int, ...] = tuple(accumulate(SHAPENET_PART_PARTS_PER_CATEGORY[:-1],
                                                          initial=0))
SHAPENET_PART_NUM_PARTS: int = sum(SHAPENET_PART_PARTS_PER_CATEGORY)  # 50
SHAPENET_PART_NUM_CATEGORIES: int = len(SHAPENET_PART_CATEGORIES)  # 16
# Other names the original code accepts for a category ("motor" is its name for category 10).
SHAPENET_PART_ALIASES: dict[str, str] = {"motor": "motorbike"}

# ScanObjectNN's 15 classes in the official label order (label i -> SCANOBJECTNN_CLASSES[i]).
SCANOBJECTNN_CLASSES: tuple[str, ...] = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table", "bed",
    "pillow", "sink", "sofa", "toilet",
)

# The 13 ShapeNetRender (3D-R2N2) classes: (name, ShapeNet synset id = folder name under ShapeNet/
# and ShapeNetRendering/).
SHAPENET_RENDER_CLASSES: tuple[tuple[str, str], ...] = (
    ("airplane", "02691156"), ("bench", "02828884"), ("cabinet", "02933112"), ("car", "02958343"),
    ("chair", "03001627"), ("display", "03211117"), ("lamp", "03636649"),
    ("loudspeaker", "03691459"), ("rifle", "04090263"), ("sofa", "04256520"),
    ("table", "04379243"), ("telephone", "04401088"), ("watercraft", "04530566"),
)
