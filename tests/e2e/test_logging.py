"""Watching a run: `--report-to` (the Trainer's own integrations), the training figure and `posattn plot-training`.

Two real runs, once for the module: a tiny Trainer (a 2-layer model on random blocks, 6 steps, about 3 s) logging to
TensorBoard, and a tiny `posattn train` run (about 20 s on 2 CPU cores) for a run folder as training leaves it."""

import json
import os
import shutil

import pytest
from conftest import assert_png, random_ids, tiny_lm
from datasets import Dataset
from transformers import Trainer, TrainingArguments, default_data_collator

from hf_posattn.cli import build_parser
from hf_posattn.figures.common import DPI
from hf_posattn.figures.training import TRAINING_SIZE, plot_training, write_training_figure
from hf_posattn.runfolder import read_run
from hf_posattn.runfolder import read_log_history, run_name
from hf_posattn.training.logs import check_report_to

FIGURE_PIXELS = (int(TRAINING_SIZE[0] * DPI), int(TRAINING_SIZE[1] * DPI))


def blocks(count: int, length: int = 16, seed: int = 0) -> Dataset:
    ids = random_ids(count, length, seed=seed).tolist()
    return Dataset.from_dict({"input_ids": ids, "labels": ids})


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory):
    """A real Trainer run with report_to=["tensorboard"]: 6 steps, a log every step, an evaluation and a checkpoint
    every 3. Returns the Trainer and its output folder (which, like a run folder, holds its state only in its
    checkpoints)."""
    pytest.importorskip("tensorboard", reason="pip install tensorboard (in the test extra)")
    folder = str(tmp_path_factory.mktemp("tensorboard") / "tiny-run")
    args = TrainingArguments(
        output_dir=folder, run_name=run_name(folder), report_to=check_report_to(["tensorboard"]), max_steps=6,
        per_device_train_batch_size=4, learning_rate=1e-2, lr_scheduler_type="linear", logging_steps=1,
        eval_strategy="steps", eval_steps=3, save_strategy="steps", save_steps=3,
        include_num_input_tokens_seen="all", use_cpu=True, disable_tqdm=True, seed=0,
    )
    trainer = Trainer(model=tiny_lm().train(), args=args, train_dataset=blocks(32), eval_dataset=blocks(8, seed=1),
                      data_collator=default_data_collator)
    trainer.train()
    return trainer, folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished `posattn train` run, as training leaves it: trainer_state.json only in its checkpoints."""
    from hf_posattn.data.corpus import load_shakespeare
    from hf_posattn.training.options import TrainingOptions
    from hf_posattn.training.run import train

    root = tmp_path_factory.mktemp("trained")
    text = root / "play.txt"
    text.write_text(load_shakespeare()["train"][0]["text"][:30_000], encoding="utf-8")
    folder = root / "posattn-alibi"
    train(TrainingOptions(output_dir=str(folder), position="alibi", data=[str(text)], max_steps=8, seq_len=32,
                          batch_size=4, vocab_size=300, eval_steps=4, quiet=True))
    return str(folder)


def state_history(path: str) -> list[dict]:
    with open(path) as file:
        return json.load(file)["log_history"]


def test_tensorboard_logs_the_loss_read_back_with_tensorboards_reader(tensorboard_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer, folder = tensorboard_run
    logs = os.path.join(folder, "runs")  # the Trainer's default: OUTPUT_DIR/runs/<date>_<host>
    (log_dir,) = os.listdir(logs)
    events = EventAccumulator(os.path.join(logs, log_dir))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "train/learning_rate", "eval/loss"} <= set(tags), tags
    history = trainer.state.log_history
    for tag, key in (("train/loss", "loss"), ("eval/loss", "eval_loss"), ("train/learning_rate", "learning_rate")):
        logged = [(entry["step"], entry[key]) for entry in history if key in entry]
        read = [(event.step, event.value) for event in events.Scalars(tag)]
        assert [step for step, _ in read] == [step for step, _ in logged]
        assert [value for _, value in read] == pytest.approx([value for _, value in logged], rel=1e-6)
    assert len(events.Scalars("train/loss")) == 6 and len(events.Scalars("eval/loss")) == 2


def test_history_comes_from_the_last_checkpoint_then_from_the_run_folder(tensorboard_run, tmp_path):
    trainer, folder = tensorboard_run
    assert not os.path.exists(os.path.join(folder, "trainer_state.json"))
    assert read_log_history(folder) == state_history(os.path.join(folder, "checkpoint-6", "trainer_state.json"))
    copy = str(tmp_path / "copy")
    shutil.copytree(folder, copy)
    trainer.state.save_to_json(os.path.join(copy, "trainer_state.json"))  # what trainer.save_state() writes
    assert read_log_history(copy) == trainer.state.log_history  # with the final summary (train_loss, ...)
    assert "train_loss" in read_log_history(copy)[-1]


def test_figure_data_match_trainer_state(tensorboard_run, tmp_path):
    _, folder = tensorboard_run
    history = state_history(os.path.join(folder, "checkpoint-6", "trainer_state.json"))
    output = tmp_path / "training.png"
    (curves,) = plot_training(str(output), {"tiny": read_log_history(folder)}, baseline=4.5)["tiny"]
    assert_png(output, FIGURE_PIXELS)
    assert curves["x"] == "num_input_tokens_seen"
    for key in ("loss", "eval_loss", "learning_rate"):
        entries = [entry for entry in history if key in entry]
        assert curves[key] == ([entry["num_input_tokens_seen"] for entry in entries], [entry[key] for entry in entries])
    assert len(curves["loss"][0]) == 6 and len(curves["eval_loss"][0]) == 2
    assert curves["loss"][0] == [64 * step for step in range(1, 7)]  # 4 blocks of 16 tokens per step


def test_figure_falls_back_to_steps_when_a_log_lacks_tokens_seen(tensorboard_run, tmp_path):
    _, folder = tensorboard_run
    history = [{key: value for key, value in entry.items() if key != "num_input_tokens_seen"} if entry["step"] == 3
               else entry for entry in read_log_history(folder)]
    (curves,) = plot_training(str(tmp_path / "steps.png"), {"run": history})["run"]
    assert curves["x"] == "step" and curves["loss"][0] == [1, 2, 3, 4, 5, 6]


def test_figure_of_several_runs_and_seeds(tensorboard_run, trained, tmp_path):
    """One colour per label; a label may hold several histories (a scheme's seeds); baselines per label."""
    output = tmp_path / "runs.png"
    small, run = read_log_history(tensorboard_run[1]), read_log_history(trained)
    plotted = plot_training(str(output), {"a": [small, small[:4]], "b": run}, baseline={"a": 4.0, "b": 5.0})
    assert [len(plotted["a"]), len(plotted["b"])] == [2, 1]
    assert plotted["a"][1]["loss"][1] == [entry["loss"] for entry in small[:4] if "loss" in entry]
    assert_png(output, FIGURE_PIXELS)


def test_a_finished_run_gets_its_figure_and_its_card_shows_it(trained):
    from transformers import AutoConfig

    from hf_posattn.sharing.card import write_model_card

    figure = write_training_figure(trained)
    assert figure == os.path.join(trained, "training.png")
    assert_png(figure, FIGURE_PIXELS)
    card = write_model_card(trained, AutoConfig.from_pretrained(trained), read_run(trained))
    assert "](training.png)" in str(card)
    with open(os.path.join(trained, "README.md")) as file:
        assert "](training.png)" in file.read()


def test_a_card_without_a_figure_shows_none(trained, tmp_path):
    from transformers import AutoConfig

    from hf_posattn.sharing.card import build_model_card

    config, run = AutoConfig.from_pretrained(trained), read_run(trained)
    assert ".png" not in str(build_model_card(config, run, model_id="user/model"))
    # `posattn push` renders the card for the Hub repo, with the figure it uploads beside it.
    card = build_model_card(config, run, model_id="user/model", training_figure="training.png")
    assert "](training.png)" in str(card)
    assert "--report-to" not in str(build_model_card(config, {**run, "options": {**run["options"],
                                                                              "report_to": ["tensorboard"]}}, "m"))


def test_figure_inputs_given_by_training_itself(trained, tmp_path):
    """Training writes its final files in a temporary folder: it gives the history, baseline and name."""
    history = read_log_history(trained)
    output = write_training_figure(str(tmp_path), history=history, baseline=5.0, label="runs/alibi")
    assert_png(output, FIGURE_PIXELS)


def test_missing_matplotlib_leaves_a_note_and_no_figure(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # as if it were not installed
    assert write_training_figure(str(tmp_path), history=read_log_history(trained)) is None
    assert 'pip install "hf-posattn[plot]"' in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def plot_training_command(*args) -> int:
    """`posattn plot-training ARGS` through its own parser (as cli.main runs it)."""
    parsed = build_parser("plot-training").parse_args(["plot-training", *map(str, args)])
    return parsed.run(parsed)


def test_plot_training_draws_one_or_more_runs(trained, tensorboard_run, tmp_path, capsys):
    one = tmp_path / "one.png"
    assert plot_training_command(trained, "--output", one) == 0
    assert_png(one, FIGURE_PIXELS)
    assert str(one) in capsys.readouterr().out
    both = tmp_path / "both.png"
    assert plot_training_command(trained, tensorboard_run[1], "--output", both) == 0
    assert_png(both, FIGURE_PIXELS)


def test_plot_training_refuses_a_folder_without_a_history_before_drawing(trained, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    output = tmp_path / "out.png"
    with pytest.raises(ValueError, match=f"{empty} holds no trainer_state.json"):
        plot_training_command(trained, empty, "--output", output)
    with pytest.raises(ValueError, match="is not a folder"):
        plot_training_command(tmp_path / "missing", "--output", output)
    with pytest.raises(ValueError, match="given twice"):
        plot_training_command(trained, trained, "--output", output)
    broken = tmp_path / "broken" / "checkpoint-2"
    broken.mkdir(parents=True)
    (broken / "trainer_state.json").write_text("{not json")
    with pytest.raises(ValueError, match="no trainer_state.json there can be read"):
        plot_training_command(broken.parent, "--output", output)
    damaged = tmp_path / "damaged"
    shutil.copytree(trained, damaged)
    (damaged / "posattn_run.json").write_text('{"options": ')
    with pytest.raises(ValueError, match="posattn_run.json cannot be read"):
        plot_training_command(trained, damaged, "--output", output)
    assert not output.exists()


def test_plot_training_refuses_an_output_it_cannot_write_before_drawing(trained, tmp_path):
    (tmp_path / "file").write_text("x")
    for output, message in ((tmp_path, "is a folder"), (tmp_path / "file" / "out.png", "is a file, so nothing")):
        with pytest.raises(ValueError, match=message):
            plot_training_command(trained, "--output", output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_history_skips_a_state_cut_short_for_the_one_before(tensorboard_run, tmp_path):
    """A run killed while saving checkpoint-6 (or its final state): the newest readable state is read."""
    _, folder = tensorboard_run
    copy = tmp_path / "killed"
    shutil.copytree(folder, copy)
    newest = copy / "checkpoint-6" / "trainer_state.json"
    newest.write_text(newest.read_text()[:100])  # truncated
    (copy / "trainer_state.json").write_text('{"log_history": []}')  # no logs
    assert read_log_history(str(copy)) == state_history(str(copy / "checkpoint-3" / "trainer_state.json"))
    assert max(entry["step"] for entry in read_log_history(str(copy))) == 3


def test_a_diverged_run_is_drawn_with_its_non_finite_losses(tensorboard_run, tmp_path):
    history = [dict(entry) for entry in read_log_history(tensorboard_run[1])]
    losses = [entry for entry in history if "loss" in entry]
    losses[3]["loss"], losses[4]["loss"] = float("nan"), float("inf")
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"log_history": history}))  # as the Trainer writes them: NaN, Infinity
    output = tmp_path / "diverged.png"
    (curves,) = plot_training(str(output), {"diverged": read_log_history(str(tmp_path))})["diverged"]
    assert_png(output, FIGURE_PIXELS)
    assert curves["loss"][1][3] != curves["loss"][1][3] and curves["loss"][1][4] == float("inf")


def test_study_figure_one_colour_per_scheme(trained, tensorboard_run, tmp_path, capsys):
    from hf_posattn.figures.training import plot_study_training

    study = {"settings": {"preset": "tiny", "max_steps": 8, "seq_len": 32},
             "unigram_baseline": {"loss": 5.0, "perplexity": 148.4},
             "runs": [{"position": "alibi", "seed": 0, "output_dir": trained},
                      {"position": "alibi", "seed": 1, "output_dir": tensorboard_run[1]},
                      {"position": "rotary", "seed": 0, "output_dir": str(tmp_path / "gone")}]}
    output = plot_study_training(study, str(tmp_path / "compare-training.png"))
    assert_png(output, FIGURE_PIXELS)
    assert "rotary, seed 0: left out of compare-training.png" in capsys.readouterr().err
    study["runs"] = study["runs"][2:]
    assert plot_study_training(study, str(tmp_path / "none.png")) is None
