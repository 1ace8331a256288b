"""The contact-sheet tool (datasets/making/contact_sheet.py) on the roots it must draw: synthetic, prepared."""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from datasets.making.contact_sheet import CELL, main, make_contact_sheet
from datasets.io import DatasetError, DatasetNotFoundError
from datasets.prepare_meshes.prepare import prepare

MESHES = Path(__file__).parent / "data" / "meshes"
TITLE_H, LABEL_H = 14, 12  # the sheet's row layout: title, cells, labels


def _grid(image: Image.Image, cell: int = CELL) -> tuple[int, int]:
    """(rows, columns) of a sheet, from its size."""
    w, h = image.size
    return (h - 4) // (TITLE_H + cell + LABEL_H), (w - 4) // (cell + 4)


def _cell(image: Image.Image, row: int, col: int, cell: int = CELL) -> np.ndarray:
    """(cell, cell, 3) pixels of one cell."""
    y, x = 2 + row * (TITLE_H + cell + LABEL_H) + TITLE_H, 4 + col * (cell + 4)
    return np.asarray(image.convert("RGB"))[y:y + cell, x:x + cell]


@pytest.fixture(scope="module")
def prepared_root(tmp_path_factory) -> Path:
    """A root prepared from real meshes in two class folders (2 and 1 objects)."""
    base = tmp_path_factory.mktemp("contact_prepared")
    for cls, names in {"block": ["comments.off", "nested.glb"], "vessel": ["sphere.ply"]}.items():
        (base / "in" / cls).mkdir(parents=True)
        for n in names:
            shutil.copy(MESHES / n, base / "in" / cls / n)
    report = prepare(base / "in", base / "root", num_points=256, views=2, workers=1, progress=False)
    assert report["ok"], report["table"]
    return base / "root"


def test_sheet_of_a_prepared_root(prepared_root, tmp_path):
    out = tmp_path / "sheet.png"
    make_contact_sheet(prepared_root, out)
    sheet = Image.open(out)
    # rows: ShapeNetRender views, ShapeNetRender clouds, custom_cls; one column per class
    assert _grid(sheet) == (3, 2)
    for row in range(3):
        for col in range(2):
            assert (_cell(sheet, row, col) < 200).any(), f"cell ({row}, {col}) is blank"
    # the first view of the first object of 'block' (comments.off) is in the first cell
    view = Image.open(prepared_root / "ShapeNetRendering" / "block" / "comments" / "rendering" / "00.png")
    white = Image.new("RGBA", view.size, (255, 255, 255, 255))
    white.alpha_composite(view.convert("RGBA"))
    expected = np.asarray(white.convert("RGB").resize((CELL, CELL), Image.BILINEAR))
    got = _cell(sheet, 0, 0).copy()
    inner = (slice(1, CELL - 1), slice(1, CELL - 1))  # the frame is drawn over the border pixels
    np.testing.assert_array_equal(got[inner], expected[inner])


def test_cli_on_a_prepared_root_plus_a_published_layout_folder(prepared_root, tiny_data_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(prepared_root, root)
    shutil.copytree(tiny_data_root / "modelnet40_ply_hdf5_2048", root / "modelnet40_ply_hdf5_2048")
    out = tmp_path / "sheet.png"
    assert main(["--root", str(root), "--out", str(out), "--cell", "48"]) == 0
    # + the ModelNet40 row (6 classes in the tiny preset)
    assert _grid(Image.open(out), cell=48) == (4, 6)


def test_sheet_of_the_synthetic_tiny_root_is_the_generators_own(tiny_data_root, tmp_path):
    out = tmp_path / "sheet.png"
    make_contact_sheet(tiny_data_root, out)
    assert out.read_bytes() == (tiny_data_root / "contact_sheet.png").read_bytes()
    # ShapeNetRender x2, ModelNet40, ScanObjectNN, ShapeNetPart; the 16 part categories are widest
    assert _grid(Image.open(out)) == (5, 16)


def test_empty_root_and_bad_file_raise_naming_the_path(prepared_root, tmp_path, capsys):
    with pytest.raises(DatasetNotFoundError, match="holds none of"):
        make_contact_sheet(tmp_path, tmp_path / "sheet.png")
    assert main(["--root", str(tmp_path / "missing"), "--out", str(tmp_path / "s.png")]) == 2
    assert "missing: not a folder" in capsys.readouterr().err
    root = tmp_path / "root"
    shutil.copytree(prepared_root, root)
    bad = root / "custom_cls" / "ply_data_train0.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("data", data=np.zeros((2, 8, 3), np.float32))
    with pytest.raises(DatasetError, match=r"ply_data_train0\.h5: missing HDF5 key\(s\) \['label'\]"):
        make_contact_sheet(root, tmp_path / "sheet.png")
