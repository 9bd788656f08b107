"""`posattn compare`, the length-extrapolation study, at tiny settings: a 150 kB text, 2 training steps per scheme,
evaluation at L, 2L, 4L and 16L (past the 1,024 positions of learned embeddings)."""

import csv
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import assert_png, play_file, posattn, snapshot

from hf_posattn.study.options import DEFAULT_POSITIONS

TINY = ["--seq-len", "128", "--factors", "1,2,4,16", "--max-steps", "2", "--batch-size", "2", "--vocab-size", "300"]


LENGTHS = [128, 256, 512, 2048]


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    return play_file(tmp_path_factory, 150_000)


@pytest.fixture(scope="module")
def study(text, tmp_path_factory):
    """The study, run once; returns its folder."""
    folder = tmp_path_factory.mktemp("compare") / "study"
    assert posattn("compare", *TINY, "--data", text, "--output-dir", folder) == 0
    return folder


def read_table(folder):
    with open(folder / "compare.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_one_row_per_scheme_with_finite_perplexities(study):
    rows = read_table(study)
    # The default schemes, in order; rotary is followed by its context extensions of the same trained model.
    assert [row["position"] for row in rows if not row["extension"]] == list(DEFAULT_POSITIONS)
    assert [row["extension"] for row in rows if row["position"] == "rotary"] == ["", "linear", "dynamic", "yarn"]
    for row in rows:
        for length in LENGTHS:
            if row["position"] == "learned" and length > 1024:
                # Learned positions evaluate up to their maximum, and say why they stop.
                assert row[f"ppl_{length}"] == ""
                past = "2048: past the 1024 positions that learned positions have (max_position_embeddings)"
                assert past in row["notes"]
            else:
                assert math.isfinite(float(row[f"ppl_{length}"])) and float(row[f"ppl_{length}"]) > 1
    assert_png(study / "compare.png", (1100, 600))
    markdown = (study / "compare.md").read_text()
    assert "| 2048 (16L) |" in markdown and "| learned |" in markdown and "skipped" in markdown


def test_every_scheme_trains_with_the_same_budget_seed_and_tokens(study):
    recorded = json.loads((study / "compare.json").read_text())
    assert recorded["settings"]["lengths"] == LENGTHS
    assert recorded["command"].startswith("posattn compare --seq-len 128")
    assert len(recorded["runs"]) == len(DEFAULT_POSITIONS)
    options = []
    for run in recorded["runs"]:
        assert not [name for name in os.listdir(run["output_dir"]) if name.startswith("checkpoint-")]
        with open(os.path.join(run["output_dir"], "posattn_run.json")) as file:
            options.append(json.load(file)["options"])
        # Every length scores the same validation tokens (the stream is cut to a multiple of the longest).
        scored = [r for r in run["results"] if "tokens" in r]
        assert all(r["tokens"] + r["windows"] == recorded["settings"]["eval_tokens"] for r in scored)
    differing = {name for name in options[0] if len({json.dumps(o[name]) for o in options}) > 1}
    assert differing == {"position", "output_dir"}
    assert options[0]["tokenizer"] == str(study / "tokenizer") and options[0]["max_steps"] == 2


def test_a_second_call_reuses_finished_runs_and_adds_seeds(study, text, capsys):
    # Three of the study's schemes again (every scheme would only take longer): the same rows, nothing trained.
    some = ["sinusoidal", "rotary", "alibi"]
    before = [row for row in read_table(study) if row["position"] in some]
    assert posattn("compare", *TINY, "--data", text, "--output-dir", study, "--positions", *some) == 0
    out = capsys.readouterr().err  # progress goes to stderr
    assert out.count("reusing the finished run") == len(some) and "training ..." not in out
    assert read_table(study) == before  # the same models on the same tokens: the same numbers

    # An interrupted run (its run file written at the start, no results yet) is trained again; the others are reused.
    run_file = study / "rotary-seed0" / "posattn_run.json"
    run_file.write_text(json.dumps({**json.loads(run_file.read_text()), "results": None}))
    assert posattn("compare", *TINY, "--data", text, "--output-dir", study, "--positions", *some) == 0
    out = capsys.readouterr().err
    assert "rotary, seed 0: training ..." in out and out.count("reusing the finished run") == len(some) - 1
    # Same seed, same options: the same model again (its training time aside).
    assert [{**row, "train_minutes": None} for row in read_table(study)] == [
        {**row, "train_minutes": None} for row in before]

    # Two seeds of two schemes: seed 0 is reused, seed 1 trained; the table gives mean and std.
    assert posattn("compare", *TINY, "--data", text, "--output-dir", study, "--positions", "alibi", "none",
                   "--seeds", "0,1") == 0
    out = capsys.readouterr().err
    assert out.count("reusing the finished run") == 2 and out.count("training ...") == 2
    rows = read_table(study)
    assert [row["position"] for row in rows] == ["alibi", "none"]
    assert all(row["seeds"] == "2" and float(row["std_128"]) >= 0 for row in rows)
    assert "±" in (study / "compare.md").read_text()

    # Another vocabulary would give new runs other tokens than the study's: refused, before any work.
    assert posattn("compare", *TINY[:-1], "320", "--data", text, "--output-dir", study) == 2
    assert "holds a study made with other data or vocabulary" in capsys.readouterr().err


def test_bad_input_is_refused_before_any_work(text, tmp_path, capsys):
    folder = tmp_path / "study"
    assert posattn("compare", "--seq-len", "2048", "--max-steps", "2", "--data", text, "--output-dir", folder) == 2
    assert "above the 1024 positions that learned positions have" in capsys.readouterr().err
    assert posattn("compare", *TINY, "--eval-tokens", "1000", "--data", text, "--output-dir", folder) == 2
    assert "fewer than one window of the longest evaluation length 2048" in capsys.readouterr().err
    assert posattn("compare", "--seq-len", "1", *TINY[2:], "--data", text, "--output-dir", folder) == 2
    assert "--seq-len 1: the model learns to predict each token of a block from the tokens before it" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:  # argparse: usage and exit status 2
        posattn("compare", "--seeds", "0,-1", "--output-dir", folder)
    assert exited.value.code == 2 and "expected seeds (integers >= 0)" in capsys.readouterr().err
    assert not folder.exists()


SMALL = ["--positions", "none", "--seq-len", "16", "--factors", "1", "--max-steps", "2", "--batch-size", "2",
         "--vocab-size", "300"]


@pytest.mark.parametrize("mine", ["compare.csv", "tokenizer", "a training run"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_that_is_not_a_study_is_neither_written_nor_read(mine, overwrite, text, tmp_path, capsys):
    """A user's own compare.csv is not replaced, a tokenizer/ found there is not used (whatever --vocab-size says),
    a run of `posattn train` is not taken for a study: the folder is refused, with or without --overwrite."""

    from hf_posattn.data.tokenizers import train_tokenizer

    folder = tmp_path / "mine"
    folder.mkdir()
    if mine == "compare.csv":
        (folder / "compare.csv").write_text("my,own,table\n")
    elif mine == "tokenizer":
        train_tokenizer(["other words entirely " * 100], 280).save_pretrained(folder / "tokenizer")
    else:
        (folder / "posattn_run.json").write_text('{"options": {}, "results": null}')
    before = snapshot(folder)
    assert posattn("compare", *SMALL, "--data", text, "--output-dir", folder, *["--overwrite"] * overwrite) == 2
    err = capsys.readouterr().err
    assert f"--output-dir {folder} holds files that are not a posattn study" in err, err
    assert snapshot(folder) == before and sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_a_study_is_known_by_its_own_file_and_leftovers_of_a_kill_do_not_block_it(text, tmp_path, capsys):
    study = tmp_path / "study"
    assert posattn("compare", *SMALL, "--data", text, "--output-dir", study) == 0
    assert json.loads((study / "posattn_study.json").read_text())["settings"]["output_dir"] == str(study)
    # What a killed study leaves: a run's half-saved files, a table's temporary file. Neither is a user's.
    (study / "none-seed0" / ".saving").mkdir()
    (study / ".compare.csv.0badcafe.tmp").write_text("scheme,")
    assert posattn("compare", *SMALL, "--data", text, "--output-dir", study) == 0
    assert "reusing the finished run" in capsys.readouterr().err
    assert posattn("compare", *SMALL[:-5], "3", *SMALL[-4:], "--data", text, "--output-dir", study,
                   "--overwrite") == 0
    assert json.loads((study / "none-seed0" / "posattn_run.json").read_text())["results"]["steps"] == 3
    assert not (study / "none-seed0" / ".saving").exists()
    # A tokenizer in the study's folder that the study did not record is not used either.
    shutil.rmtree(study / "tokenizer")
    from hf_posattn.data.tokenizers import train_tokenizer

    train_tokenizer(["other words entirely " * 100], 280).save_pretrained(study / "tokenizer")
    assert posattn("compare", *SMALL, "--data", text, "--output-dir", study) == 2
    assert "holds a tokenizer that this study did not make" in capsys.readouterr().err


@pytest.mark.parametrize("name, extra", [("none-seed0", []), ("tokenizer", []), ("logs", ["--jobs", "2"])])
def test_a_link_planted_under_a_name_the_study_chose_is_refused_not_followed(name, extra, text, tmp_path, capsys):
    """A study folder received from someone else may hold a symbolic link where a run's folder, the tokenizer or the
    logs go: the study writes nothing through it (the folder it points to stays as it was), and says which link."""
    study, elsewhere = tmp_path / "study", tmp_path / "elsewhere"
    assert posattn("compare", *SMALL, "--data", text, "--output-dir", study) == 0
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("not the study's")
    shutil.rmtree(study / name, ignore_errors=True)
    (study / name).symlink_to(elsewhere, target_is_directory=True)
    before = snapshot(elsewhere)
    assert posattn("compare", *SMALL, "--data", text, "--output-dir", study, "--overwrite", *extra) == 2
    assert f"{study / name} is a symbolic link (to {elsewhere})" in capsys.readouterr().err
    assert snapshot(elsewhere) == before and (study / name).is_symlink()


def test_ctrl_c_says_how_to_continue_the_study(text, tmp_path):
    study = tmp_path / "study"
    arguments = ["compare", *SMALL[:-5], "100000", *SMALL[-4:], "--data", str(text), "--output-dir", str(study)]
    process = subprocess.Popen([sys.executable, "-m", "hf_posattn", *arguments], env=dict(os.environ,
                               HF_HUB_OFFLINE="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (study / "none-seed0" / "posattn_run.json").exists():  # training has started
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    time.sleep(2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert f"run the same command again: {shlex.join(['posattn', *arguments])}" in err, err
    assert "--resume" not in err and "Traceback" not in err
