"""A study read back from its JSON file draws and tabulates as the study that `compare` returned does."""

import json

from conftest import ROOT

from hf_posattn.figures.study import plot_position_loss, plot_study, read_study
from hf_posattn.study.kind import markdown_table

RECORDED = ROOT / "docs" / "study-compare.json"  # the study README.md reports, as compare.json wrote it


def test_lengths_are_numbers_again():
    study = read_study(str(RECORDED))
    lengths = study["settings"]["lengths"]
    for row in study["table"]:
        assert sorted(row["perplexity"]) == lengths
        assert all(isinstance(length, int) for length in row["growth"])
    raw = json.loads(RECORDED.read_text())
    assert study["table"][0]["perplexity"][lengths[0]] == raw["table"][0]["perplexity"][str(lengths[0])]


def test_a_study_folder_is_read_from_its_compare_json(tmp_path):
    (tmp_path / "compare.json").write_text(RECORDED.read_text())
    assert read_study(str(tmp_path)) == read_study(str(RECORDED))


def test_read_back_it_draws_and_tabulates(tmp_path):
    study = read_study(str(RECORDED))
    assert plot_study(study, str(tmp_path / "compare.png"))
    assert plot_position_loss(study, str(tmp_path / "compare-positions.png"))
    assert (tmp_path / "compare.png").stat().st_size > 0 and (tmp_path / "compare-positions.png").stat().st_size > 0
    # The table compare.md holds, written by the same study in memory.
    assert markdown_table(study) == (ROOT / "docs" / "study-compare.md").read_text().strip()
