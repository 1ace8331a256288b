"""datasets/provenance.py: which roots hold synthetic data, and with which seed."""

import pytest

from datasets.provenance import MARKER, data_kind, data_seed
from util.fileio import InputFileError


def test_generated_root_is_synthetic_with_its_seed(tiny_data_root):
    assert data_kind(tiny_data_root) == "synthetic"
    assert data_seed(tiny_data_root) == 0


def test_root_without_marker_is_real(tmp_path):
    (tmp_path / "modelnet40_ply_hdf5_2048").mkdir()
    assert data_kind(tmp_path) == "real" and data_seed(tmp_path) is None


@pytest.mark.parametrize("text", ['{"preset": "tiny"}', '{"seed": true}', '{"seed": "0"}'])
def test_marker_without_an_integer_seed_has_none(tmp_path, text):
    (tmp_path / MARKER).write_text(text)
    assert data_kind(tmp_path) == "synthetic" and data_seed(tmp_path) is None


def test_unreadable_marker_names_the_file(tmp_path):
    (tmp_path / MARKER).write_text("{not json")
    with pytest.raises(InputFileError, match=MARKER):
        data_seed(tmp_path)
