"""A micro study per synthetic task, through the command line: the same engine as the perplexity study (run
folders, reuse of finished runs, tables and figures), its accuracy tables, randomized-position rows, and a study
folder of another task refused."""

import json
import shutil

import pytest
from conftest import posattn

from hf_posattn.data.tasks import TASKS
from hf_posattn.figures.study import read_study

MICRO = ["--positions", "alibi", "--max-steps", "4", "--seq-len", "32", "--batch-size", "4", "--factors", "1,2"]


@pytest.mark.parametrize("task", list(TASKS))
def test_a_micro_study_of_each_task_writes_its_tables_and_figures(task, tmp_path, capsys):
    folder = tmp_path / task
    assert posattn("compare", "--task", task, *MICRO, "--output-dir", folder) == 0
    out = capsys.readouterr().out
    study = json.loads((folder / "compare.json").read_text())
    [row] = study["table"]
    assert study["task"] == task and study["settings"]["lengths"] == [32, 64]
    assert set(row["exact_match"]) == {"32", "64"} and all(0 <= v <= 1 for v in row["exact_match"].values())
    assert "| scheme | parameters | 32 (L) | 64 (2L) |" in (folder / "compare.md").read_text()
    assert "exact_match_32" in (folder / "compare.csv").read_text().splitlines()[0]
    extra = {"passkey": ["compare-depths.png"], "recall": ["compare-lookup.png"]}.get(task, [])
    for figure in ["compare.png", "compare-training.png", *extra]:
        assert (folder / figure).stat().st_size > 5_000, figure
    assert "alibi" in out and (folder / "alibi-seed0" / "tokenizer.json").exists()


def test_a_task_study_reuses_its_runs_adds_random_position_rows_and_keeps_to_its_task(tmp_path, capsys):
    folder = tmp_path / "study"
    assert posattn("compare", "--task", "copy", *MICRO, "--output-dir", folder) == 0
    first = json.loads((folder / "compare.json").read_text())
    capsys.readouterr()
    assert posattn("compare", "--task", "copy", *MICRO, "--random-positions", "64", "--output-dir", folder) == 0
    err = capsys.readouterr().err
    assert "reusing the finished run" in err  # the plain run is not trained again
    assert "alibi (random positions), seed 0: on drawn positions exact match 32: " in err
    again = json.loads((folder / "compare.json").read_text())
    assert [row["label"] for row in again["table"]] == ["alibi", "alibi + random positions"]
    assert again["table"][0]["exact_match"] == first["table"][0]["exact_match"]
    # The twin is scored both ways and its row shows the positions it was trained on; the plain run keeps its own.
    twin = json.loads((folder / "alibi-random64-seed0" / "posattn_evaluation.json").read_text())
    assert [r["length"] for r in twin["results"]] == [r["length"] for r in twin["drawn_position_results"]] == [32, 64]
    assert "drawn_position_results" not in json.loads((folder / "alibi-seed0" / "posattn_evaluation.json").read_text())
    assert [row["positions"] for row in again["table"]] == ["plain", "drawn"]
    assert set(read_study(str(folder))["table"][1]["plain"]["exact_match"]) == {32, 64}
    assert "plain_exact_match_32" in (folder / "compare.csv").read_text().splitlines()[0]
    assert "scored on sorted positions drawn from [0, 64)" in (folder / "compare.md").read_text()
    assert "(the loss on the answers only, examples of lengths drawn up to L)" in (folder / "compare.md").read_text()
    # Another task in the same folder would mix its runs with these: refused, nothing changed.
    before = (folder / "compare.json").read_text()
    assert posattn("compare", "--task", "reverse", *MICRO, "--output-dir", folder) == 2
    assert "or of another task" in capsys.readouterr().err
    assert (folder / "compare.json").read_text() == before
    # A finished run whose loss read otherwise than its task now declares (a study made before) is not reused.
    run_file = folder / "alibi-seed0" / "posattn_run.json"
    run = json.loads(run_file.read_text())
    assert run["results"]["loss"] == "answers" and run["results"]["train_lengths"] == "up to L"
    run["results"]["loss"] = "every token"
    run_file.write_text(json.dumps(run))
    assert posattn("compare", "--task", "copy", *MICRO, "--output-dir", folder) == 2
    assert "trained with the loss on every token, and the copy task now trains with the loss on answers" in (
        capsys.readouterr().err)


def test_a_moved_study_continues_where_it_is_and_retrains_only_a_run_that_lost_its_model(tmp_path, capsys):
    folder = tmp_path / "study"
    assert posattn("compare", "--task", "copy", *MICRO, "--seeds", "0,1,2", "--output-dir", folder) == 0
    table = (folder / "compare.md").read_text()
    moved = tmp_path / "elsewhere" / "study"  # as `mv` would, or a copy on another machine
    moved.parent.mkdir()
    shutil.move(folder, moved)
    # seed 0 lost its model and its evaluation; seed 1 looks interrupted (no results yet); seed 2 is whole.
    (moved / "alibi-seed0" / "model.safetensors").unlink()
    (moved / "alibi-seed0" / "posattn_evaluation.json").unlink()
    (moved / "alibi-seed1" / "posattn_evaluation.json").unlink()
    run_file = moved / "alibi-seed1" / "posattn_run.json"
    run_file.write_text(json.dumps({**json.loads(run_file.read_text()), "results": None}))
    capsys.readouterr()
    assert posattn("compare", "--task", "copy", *MICRO, "--seeds", "0,1,2", "--output-dir", moved) == 0
    err = capsys.readouterr().err
    assert "its model is not whole" in err and "alibi, seed 2: reusing the finished run" in err
    assert (moved / "compare.md").read_text() == table


def test_lengths_a_bounded_scheme_cannot_take_are_skipped_and_said_before_training(tmp_path, capsys):
    folder = tmp_path / "study"
    assert posattn("compare", "--task", "passkey", "--positions", "learned", "alibi", "--max-steps", "2", "--seq-len",
                   "32", "--batch-size", "4", "--factors", "1,48", "--output-dir", folder) == 0
    err = capsys.readouterr().err
    assert err.index("learned: not evaluated at 1536") < err.index("training ...")
    study = json.loads((folder / "compare.json").read_text())
    learned, alibi = study["table"]
    assert set(learned["exact_match"]) == {"32"} and "1536" in learned["skipped"] and "1536" in alibi["exact_match"]
    [row] = [line for line in (folder / "compare.md").read_text().splitlines() if line.startswith("| learned")]
    assert row.split(" | ")[3] == "skipped" and ("Skipped (not measured): 1536: past the 1024 positions that learned "
                                                 "positions have") in (folder / "compare.md").read_text()
