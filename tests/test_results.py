"""The committed multi-seed reports (results/) are what the quickstart writes, and the README's fine-tuning table
is copied from them (issue 22: "the README table comes from it")."""

import json
import sys

import pytest

from conftest import REPO_ROOT

RESULTS = REPO_ROOT / "results"
FINETUNING = RESULTS / "ablation_finetuning"


@pytest.fixture(scope="module")
def quickstart():
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import quickstart

    return quickstart


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("|---")]


def test_finetuning_report_markdown_is_rendered_from_its_json(quickstart):
    """results/ablation_finetuning.md is ablation_markdown() of the committed .json: no number was typed in."""
    report = json.loads(FINETUNING.with_suffix(".json").read_text())
    assert report["label"].startswith("SYNTHETIC") and len(report["seeds"]) == 5
    assert set(report["stages"]) == {"pretrain", "cls", "partseg_pretrained"}
    assert quickstart.ablation_markdown(report) == FINETUNING.with_suffix(".md").read_text()


def test_finetuning_report_has_both_recipes_and_part_segmentation_with_paired_intervals():
    metrics = json.loads(FINETUNING.with_suffix(".json").read_text())["metrics"]
    for name in ("cls_dgcnn_overall_accuracy", "cls_pointmae_overall_accuracy", "partseg_pretrained_instance_miou",
                 "partseg_pretrained_class_miou"):
        other = "scratch" if name.startswith("partseg") else "random"
        difference = metrics[name]["differences"][f"crosspoint - {other}"]
        assert difference["n"] == 5 and difference["ci_low"] <= difference["mean"] <= difference["ci_high"]
        assert all(len(arm["values"]) == 5 for arm in metrics[name]["arms"].values())


def test_readme_finetuning_table_rows_are_rows_of_the_committed_report():
    readme = (REPO_ROOT / "README.md").read_text()
    report_rows = _table_rows(FINETUNING.with_suffix(".md").read_text())
    start = readme.index("results/ablation_finetuning.md")
    section = readme[start:readme.index("\n## ", start)]
    rows = _table_rows(section)
    for shown in ("recipe dgcnn |", "recipe pointmae |", "| part seg. instance mIoU |"):
        assert any(shown in row for row in rows), f"the README's fine-tuning table has no row {shown!r}"
    for row in rows:
        assert row in report_rows, row
