"""Where a study's runs run: one after another in this process (the default), `--jobs N` processes of this machine,
or any executor with `concurrent.futures`' `submit`/`result` given to `compare`; the same study gives the same table,
and a study gives the table it gave before its runs recorded their own evaluations (tests/data/study-before, made
with the earlier engine by the commands in its README)."""

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import play_file, posattn

from hf_posattn import CompareOptions, compare

BEFORE = Path(__file__).resolve().parent.parent / "data" / "study-before"
MICRO = ["--positions", "alibi", "rotary", "--seq-len", "32", "--factors", "1,2", "--max-steps", "3",
         "--batch-size", "2", "--vocab-size", "300", "--eval-tokens", "2048"]


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    return play_file(tmp_path_factory, 60_000)


@pytest.fixture(scope="module")
def in_process(text, tmp_path_factory):
    folder = tmp_path_factory.mktemp("executors") / "in-process"
    assert posattn("compare", *MICRO, "--data", text, "--output-dir", folder) == 0
    return folder


def numbers(markdown: str) -> list[float]:
    return [float(number) for number in re.findall(r"\d+\.\d+", markdown)]


def test_any_executor_with_submit_and_result_gives_the_same_table(in_process, text, tmp_path):
    options = CompareOptions(positions=["alibi", "rotary"], seq_len=32, factors=[1, 2], max_steps=3, batch_size=2,
                             vocab_size=300, eval_tokens=2048, data=[str(text)], output_dir=str(tmp_path / "pool"))
    with ThreadPoolExecutor(max_workers=1) as pool:
        study = compare(options, executor=pool)
    assert (tmp_path / "pool" / "compare.md").read_text() == (in_process / "compare.md").read_text()
    assert [row["label"] for row in study["table"]][:2] == ["alibi", "rotary"]


def test_jobs_run_side_by_side_in_processes_of_their_own(in_process, text, tmp_path, capsys):
    folder = tmp_path / "jobs"
    assert posattn("compare", *MICRO, "--data", text, "--output-dir", folder, "--jobs", "2") == 0
    err = capsys.readouterr().err
    assert "started (2 at once on this machine" in err and "(2/2 done)" in err
    for run in ("alibi-seed0", "rotary-seed0"):
        assert (folder / "logs" / f"{run}.log").exists()  # each run's output, in the study's folder
        assert json.loads((folder / run / "posattn_evaluation.json").read_text())["run"] == run
    # One CPU thread a run instead of two: the same table but for the last digits of its numbers.
    assert numbers((folder / "compare.md").read_text()) == pytest.approx(
        numbers((in_process / "compare.md").read_text()), rel=1e-3)


@pytest.mark.parametrize("study", ["lm", "passkey"])
def test_a_study_gives_the_table_it_gave_before_runs_recorded_their_evaluations(study, tmp_path, tmp_path_factory):
    play = play_file(tmp_path_factory, 150_000)  # the whole play: a validation text that holds a window of 2,048
    command = (BEFORE / study / "command.txt").read_text().format(play=play).split()
    assert posattn(*command[1:], "--output-dir", tmp_path / study) == 0
    # The rows, to the last printed digit (the caption below the table now also says what the task's loss read).
    assert table_rows(tmp_path / study / "compare.md") == table_rows(BEFORE / study / "compare.md")


def table_rows(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("|")]
