"""Command-line values refused before any work, in process: an empty path (an unset shell variable) is refused
naming its option and writes nothing, `plot-positions` caps its positions and dimensions; and a diverged training is
a ValueError that names the step and the checkpoint to go back to. A run folder's life cycle is in
tests/e2e/test_runs.py."""

import pytest
from conftest import TINY_RUN, posattn, snapshot

from hf_posattn.runfolder import RUN_FILE
from hf_posattn.training.outcomes import TrainingDiverged


def test_plot_positions_caps_the_positions(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        posattn("plot-positions", "--positions", "1000000", "--output", tmp_path / "p.png")
    assert exited.value.code == 2 and "at most 4096 positions" in capsys.readouterr().err


def test_training_diverged_is_a_value_error_with_the_fix():
    error = TrainingDiverged("runs/x", 7, "the training loss became nan", 1e30, "runs/x/checkpoint-6")
    assert isinstance(error, ValueError) and "step 7" in str(error) and "runs/x/checkpoint-6" in str(error)


@pytest.mark.parametrize("arguments, flag", [
    (["train", *TINY_RUN, "--output-dir", "", "--overwrite"], "--output-dir"),  # not the default folder
    (["train", *TINY_RUN, "--tokenizer", ""], "--tokenizer"),  # not "train a tokenizer"
    (["train", *TINY_RUN, "--data", ""], "--data"),
    (["train", *TINY_RUN, "--init-from", ""], "--init-from"),
    (["compare", "--positions", "none", "--output-dir", ""], "--output-dir"),
    (["demo", "context", "--output-dir", "", "--steps", "1"], "--output-dir"),
    (["plot-positions", "--output", ""], "--output"),
    (["evaluate", "somewhere", "--output", ""], "--output"),
    (["plot-positions", ""], "DIR"),
])
def test_an_empty_path_is_refused_not_taken_for_its_default(arguments, flag, tmp_path, monkeypatch, capsys):
    """An unset shell variable gives empty text: the command stops, naming the option, and writes nothing (the
    default run, runs/posattn-tiny-sinusoidal here, is not replaced)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "posattn-tiny-sinusoidal").mkdir(parents=True)
    (tmp_path / "runs" / "posattn-tiny-sinusoidal" / RUN_FILE).write_text('{"options": {}, "results": null}')
    before = snapshot(tmp_path)
    assert posattn(*arguments) == 2
    err = capsys.readouterr().err
    assert f"error: {flag} is empty" in err and "Traceback" not in err, err
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_plot_positions_bounds_its_dimensions(tmp_path, capsys):
    for dim, message in (("2000000000", "at most 4096 dimensions"), ("3", "an even number of dimensions")):
        with pytest.raises(SystemExit) as exited:
            posattn("plot-positions", "--dim", dim, "--output", tmp_path / "p.png")
        assert exited.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
