"""`--report-to` resolved and checked before any work: names resolve to the Trainer's list (again on --resume),
`all` is every installed integration, unknown or missing integrations are refused with the choices or the pip
install that fixes them; also the run name a logger gets from the run folder, and `plot_training` refusing runs with
nothing to draw. No training: the real runs that log are in tests/e2e/test_logging.py."""

import importlib.util

import pytest

from hf_posattn.cli import build_parser
from hf_posattn.figures.training import plot_training
from hf_posattn.runfolder import run_name
from hf_posattn.training.logs import check_report_to, known_integrations


def test_a_missing_integration_names_the_pip_install_that_fixes_it():
    missing = [name for name in ("wandb", "comet_ml") if importlib.util.find_spec(name) is None]
    if not missing:
        pytest.skip("wandb and comet_ml are both installed here")
    for name in missing:
        with pytest.raises(ValueError, match=rf"--report-to {name}: {name} is not installed.*pip install -U "
                                             rf"{name.replace('_', '-')}"):
            check_report_to(["tensorboard", name])


@pytest.mark.parametrize("name", known_integrations())
def test_every_integration_transformers_knows_is_accepted_or_refused_with_its_fix(name):
    """Each name the Trainer takes either passes (installed) or gives a message with the fix: no name reaches the
    Trainer to fail there, after the data and tokenizer work."""
    try:
        assert check_report_to([name]) == [name]
    except ValueError as error:
        assert f"--report-to {name}: " in str(error)
        assert "pip install -U " in str(error) or "KUBEFLOW_TRAINER_SERVER_URL" in str(error)


@pytest.mark.parametrize("names, expected", [
    (None, []), ("none", []), (["none"], []), ([], []), ("NONE", []), ("tensorboard", ["tensorboard"]),
    (["tensorboard", "tensorboard"], ["tensorboard"]), ("TensorBoard", ["tensorboard"]),
    ("tensorboard, tensorboard", ["tensorboard"]), (("tensorboard",), ["tensorboard"]), (["none", "none"], []),
])
def test_report_to_resolves_to_the_trainers_list_and_checks_as_itself(names, expected):
    pytest.importorskip("tensorboard")
    assert check_report_to(names) == expected
    assert check_report_to(check_report_to(names)) == expected  # resolved options are resolved again on --resume


def test_report_to_all_is_every_installed_integration():
    from transformers.integrations import get_available_reporting_integrations

    assert check_report_to("all") == get_available_reporting_integrations()
    if importlib.util.find_spec("tensorboard"):
        assert "tensorboard" in check_report_to(["all"])


@pytest.mark.parametrize("names, message", [
    (["tensorbord"], "--report-to tensorbord: unknown integration; choose from none, all, "),
    (["wandb2", "mlflow3"], "--report-to wandb2 mlflow3: unknown integration"),
    (["none", "tensorboard"], "'none' and 'all' stand alone"),
    (["all", "tensorboard"], "'none' and 'all' stand alone"),
    (["tensorboard,wandb2"], "--report-to wandb2: unknown integration"),
    ([""], "no integration named; give 'none' for none"),
    ([" , "], "no integration named"),
    ([True], "give integration names as strings"),
    ("tensorboard", None),
])
def test_bad_report_to_is_refused_with_the_choices(names, message):
    if message is None:  # a good one among the bad, so that the refusals are not the only answer
        pytest.importorskip("tensorboard")
        assert check_report_to(names) == ["tensorboard"]
        return
    with pytest.raises(ValueError, match=message) as error:
        check_report_to(names)
    if "unknown" in message:
        assert "tensorboard" in str(error.value) and "wandb" in str(error.value)


@pytest.mark.parametrize("folder, name", [
    ("runs/posattn-tiny-alibi", "runs/posattn-tiny-alibi"),
    ("runs/compare-quick/alibi-seed0", "compare-quick/alibi-seed0"),
    ("runs/compare-quick/alibi-seed0/", "compare-quick/alibi-seed0"),
    ("/tmp/x/../study/rotary-seed1", "study/rotary-seed1"),
])
def test_run_name_is_the_last_two_parts_of_the_folder(folder, name):
    assert run_name(folder) == name


def test_report_to_option_parses_names():
    parser = build_parser("train")
    assert list(parser.parse_args(["train"]).report_to) == ["none"]  # TrainingOptions' default, written there once
    assert parser.parse_args(["train", "--report-to", "tensorboard", "wandb"]).report_to == ["tensorboard", "wandb"]


def test_figure_refuses_nothing_to_draw(tmp_path):
    for runs in ({}, {"empty": []}, {"no curves": [{"step": 1, "train_runtime": 2.0}]}):
        with pytest.raises(ValueError, match="nothing to draw"):
            plot_training(str(tmp_path / "none.png"), runs)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("training, periodic, blocks, says", [
    (True, 256, 912, "perplexity 150.00  (256 of 912 validation blocks)"),
    (True, 40, 40, "perplexity 150.00  (all 40 validation blocks)"),
    (False, 256, 912, "perplexity 150.00  (all 912 validation blocks: the result)"),
    (False, 40, 40, "perplexity 150.00  (all 40 validation blocks: the result)"),
])
def test_each_validation_line_says_what_it_measured(training, periodic, blocks, says):
    """The evaluations during training score a sample of the validation blocks, the one after training all of them
    (the run's result): the two numbers differ, and each line says which it is."""
    import math

    from hf_posattn.training.callbacks import LogLines

    lines = LogLines(periodic, blocks)
    lines.training = training
    assert lines.evaluation({"eval_loss": math.log(150)}).endswith(says)
