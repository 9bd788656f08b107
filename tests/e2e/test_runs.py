"""A run folder has one owner and one life cycle: a folder with files that are not a run is never written; a
replacement (--overwrite) that fails at any phase leaves the old run byte-identical, and --resume finishes it;
a second writer is refused; a finished run is not trained again by --resume; bad input is refused before any
work, in the order a user fixes it."""

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
import torch
from conftest import TINY_RUN, posattn, snapshot, stopped_before_finishing
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, Trainer

from hf_posattn import files
from hf_posattn.cli import main
from hf_posattn import runfolder as runs
from hf_posattn.training import data as training_data
from hf_posattn.training import run as training
from hf_posattn.runfolder import RUN_FILE
from hf_posattn.training.options import TrainingOptions
from hf_posattn.training.run import train


def convert_main(args) -> None:
    """`posattn convert ARGS`, exiting with its status when it refuses."""
    code = main(["convert", *args])
    if code:
        raise SystemExit(code)


def options(folder, play_text, **changes) -> TrainingOptions:
    return TrainingOptions(output_dir=str(folder), data=[str(play_text)], max_steps=4, seq_len=16, batch_size=2,
                           vocab_size=300, eval_steps=2, quiet=True, **changes)


@pytest.mark.parametrize("files", [
    {"README.md": "my notes", "positional.py": "x = 1"},  # names a run also writes, but no run
    {"notes.txt": "mine"},
    {".hidden": ""},
    {"data/part.txt": "text"},
    {"checkpoint-7/state.json": "{}"},
])
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_with_files_that_are_not_a_run_is_never_written(files, overwrite, play_text, tmp_path, capsys):
    folder = tmp_path / "mine"
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(content)
    before = snapshot(folder)
    assert posattn("train", *TINY_RUN, "--data", play_text, "--output-dir", folder, *(["--overwrite"] * overwrite)) == 2
    assert "holds files that are not a posattn run" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        convert_main([str(tmp_path / "no-gpt2"), str(folder)] + ["--overwrite"] * overwrite)
    assert exited.value.code == 2
    assert snapshot(folder) == before and sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_a_run_with_foreign_files_is_not_overwritten(run, play_text, capsys):
    (run / "eval.json").write_text("{}")
    before = snapshot(run)
    assert posattn("train", *TINY_RUN, "--data", play_text, "--output-dir", run, "--overwrite") == 2
    assert "eval.json" in capsys.readouterr().err and snapshot(run) == before


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_an_output_dir_that_cannot_be_a_folder_is_refused(where, play_text, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    folder = tmp_path / "file" if where == "file" else tmp_path / "file" / "model"
    assert posattn("train", *TINY_RUN, "--data", play_text, "--output-dir", folder) == 2
    assert posattn("demo", "context", "--output-dir", folder, "--output", tmp_path / "c.png", "--steps", "1") == 2
    err = capsys.readouterr().err
    assert err.count(str(tmp_path / "file")) >= 2 and "Traceback" not in err
    assert (tmp_path / "file").read_text() == "x"


def test_inputs_are_checked_in_the_order_a_user_fixes_them(run, tmp_path, capsys):
    # The data is wrong and the folder already holds a run: the data is named first.
    assert posattn("train", *TINY_RUN, "--data", tmp_path / "missing.txt", "--output-dir", run) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{"text": broken\n')
    assert posattn("train", *TINY_RUN, "--data", bad, "--output-dir", run) == 2
    assert f"--data {bad}: cannot be read as json data" in capsys.readouterr().err
    assert posattn("evaluate", run, "--output", tmp_path, "--lengths", "16") == 2  # a folder, before any work
    assert f"--output {tmp_path} is a folder" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1e-3"])
def test_non_finite_or_non_positive_options_are_refused_up_front(value, play_text, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        posattn("train", *TINY_RUN, "--data", play_text, "--output-dir", tmp_path / "m", f"--learning-rate={value}")
    assert exited.value.code == 2 and "expected a positive number" in capsys.readouterr().err
    with pytest.raises(ValueError, match="learning_rate must be a finite number greater than 0"):
        train(options(tmp_path / "m", play_text, learning_rate=float(value)))
    assert not (tmp_path / "m").exists()


def fail(*args, **kwargs):
    raise OSError(28, "No space left on device (injected)")


@contextlib.contextmanager
def saved_then_disk_full(folder, what=None):
    """The real `saved_whole`, failing once the model's files are saved, before they are renamed into place."""
    with files.saved_whole(folder, what) as temporary:
        yield temporary
        if what and "the model" in what:
            raise OSError(28, "No space left on device (injected)")


def fail_after_training(original):
    def train_then_fail(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise KeyboardInterrupt
    return train_then_fail


PHASES = {
    "tokens": (training_data, "pack", fail),
    "trainer": (training, "make_trainer", fail),
    "record-start": (training, "write_run_file", fail),
    "training": (Trainer, "train", fail),
    "checkpoint": (Trainer, "save_model", fail),
    "final-save": (training, "save_model", fail),
    "saved-files": (training, "saved_whole", saved_then_disk_full),
    "sample": (training, "generate_text", fail),
    "card": (training, "write_model_card", fail),
    "swap": (runs, "swap_in", fail),
}


@pytest.mark.parametrize("phase", PHASES)
def test_a_replacement_that_fails_at_any_phase_leaves_the_old_run_as_it_was(phase, run, play_text, monkeypatch):
    before = snapshot(run)
    owner, name, replacement = PHASES[phase]
    with monkeypatch.context() as patched:
        patched.setattr(owner, name, replacement)
        with pytest.raises(OSError, match="injected"):
            train(options(run, play_text, position="rotary", overwrite=True))
    assert snapshot(run) == before
    # The old run still loads as it was; a new --overwrite replaces it, and leaves nothing beside it.
    assert AutoModelForCausalLM.from_pretrained(run).config.position_embedding_type == "sinusoidal"
    train(options(run, play_text, position="alibi", overwrite=True))
    assert AutoModelForCausalLM.from_pretrained(run).config.position_embedding_type == "alibi"
    assert sorted(p.name for p in run.parent.iterdir()) == ["model"]


def test_an_interrupted_replacement_resumes_in_its_staging_folder(run, play_text, monkeypatch, capsys):
    before = snapshot(run)
    monkeypatch.setattr(Trainer, "train", fail_after_training(Trainer.train))
    with pytest.raises(KeyboardInterrupt):
        train(options(run, play_text, position="rotary", overwrite=True))
    monkeypatch.undo()
    assert snapshot(run) == before and (run.parent / ".model.staging" / RUN_FILE).is_file()
    assert posattn("train", "--output-dir", run, "--resume", "--quiet") == 0
    assert f"resuming from {run.parent / '.model.staging' / 'checkpoint-4'}" in capsys.readouterr().err
    assert AutoModelForCausalLM.from_pretrained(run).config.position_embedding_type == "rotary"
    assert not (run.parent / ".model.staging").exists()


HOLD_LOCK = """
import sys, time
from hf_posattn.runfolder import locked
with locked(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("command", ["train", "train-overwrite", "demo", "compare"])
def test_a_second_writer_is_refused(command, run, play_text, tmp_path, capsys):
    target = {"train": tmp_path / "new", "compare": tmp_path / "study"}.get(command, run)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        before = snapshot(run)
        arguments = {
            "train": ["train", *TINY_RUN, "--data", play_text, "--output-dir", target],
            "train-overwrite": ["train", *TINY_RUN, "--data", play_text, "--output-dir", run, "--overwrite"],
            "demo": ["demo", "context", "--output-dir", run, "--overwrite", "--steps", "1", "--output",
                     tmp_path / "c.png"],
            "compare": ["compare", "--positions", "none", "--seq-len", "16", "--factors", "1", "--max-steps", "1",
                        "--vocab-size", "300", "--data", play_text, "--output-dir", target],
        }[command]
        assert posattn(*arguments) == 2
        assert f"{target} is being written by another posattn process" in capsys.readouterr().err
        assert snapshot(run) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_finished_run_given_resume_says_so(run, capsys):
    """A finished run keeps no checkpoint: --resume has nothing to continue from, and says how to train its model
    further (a new run from it)."""
    assert not list(run.glob("checkpoint-*"))
    before = snapshot(run)
    for more in ([], ["--max-steps", "6"]):
        assert posattn("train", "--output-dir", run, "--resume", "--quiet", *more) == 2
        err = capsys.readouterr().err
        assert "holds a finished run (4 steps), and a finished run keeps no checkpoints" in err, err
        assert f"--init-from {run}, with another --output-dir" in err
    assert snapshot(run) == before


def test_a_run_finished_with_its_checkpoints_trains_longer_from_them(unfinished_run, tmp_path, capsys):
    """A run that finished before finishing removed checkpoints (its results recorded, its checkpoints there)
    trains longer with --resume and a larger --max-steps."""
    run = tmp_path / "model"
    shutil.copytree(unfinished_run, run)
    record = json.loads((run / RUN_FILE).read_text())
    (run / RUN_FILE).write_text(json.dumps({**record, "results": {"steps": 4}}))
    assert posattn("train", "--output-dir", run, "--resume", "--quiet") == 2
    assert "holds a finished run (4 steps): there is nothing to resume" in capsys.readouterr().err
    assert posattn("train", "--output-dir", run, "--resume", "--max-steps", "6", "--quiet") == 0
    assert json.loads((run / RUN_FILE).read_text())["results"]["steps"] == 6
    assert not list(run.glob("checkpoint-*"))


def test_a_run_killed_after_its_last_checkpoint_resumes_to_the_uninterrupted_result(finished_run, unfinished_run,
                                                                                   tmp_path):
    """What a kill between the last checkpoint and the end leaves (`unfinished_run`): the checkpoints, the run file
    without results, no model. Resumed, it ends as the uninterrupted run, and keeps no checkpoint."""
    run = tmp_path / "model"
    shutil.copytree(unfinished_run, run)
    assert not (run / "model.safetensors").exists()
    assert posattn("train", "--output-dir", run, "--resume", "--quiet") == 0
    ours, theirs = (json.loads((folder / RUN_FILE).read_text())["results"] for folder in (run, finished_run))
    assert ours["steps"] == theirs["steps"] == 4 and ours["tokens_seen"] == theirs["tokens_seen"]
    assert ours["eval_loss"] == pytest.approx(theirs["eval_loss"], rel=1e-6)
    assert ours["sample"] == theirs["sample"]
    mine, reference = load_file(run / "model.safetensors"), load_file(finished_run / "model.safetensors")
    assert all(torch.equal(mine[name], reference[name]) for name in reference)
    assert not list(run.glob("checkpoint-*"))


def test_a_run_whose_loss_becomes_nan_stops_and_keeps_its_last_good_checkpoint(play_text, tmp_path, capsys):
    folder = tmp_path / "model"
    assert posattn("train", *TINY_RUN[:-3], "--max-steps", "20", "--save-steps", "1", "--eval-steps", "20",
                   "--learning-rate", "1e30", "--data", play_text, "--output-dir", folder, "--quiet") == 2
    err = capsys.readouterr().err
    assert "became" in err and "NaN" in err or "nan" in err, err
    assert "the last good checkpoint" in err and "--learning-rate" in err
    assert not (folder / "model.safetensors").exists()
    checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    assert checkpoints, "the checkpoints before the NaN step are kept"
    for checkpoint in checkpoints:
        assert all(torch.isfinite(t).all() for t in load_file(checkpoint / "model.safetensors").values())
    assert json.loads((folder / RUN_FILE).read_text())["results"] is None


def test_train_json_is_alone_on_stdout(play_text, tmp_path, capsys):
    arguments = [a for a in TINY_RUN if a != "--quiet"]  # with the progress bar and the Trainer's logs
    assert posattn("train", *arguments, "--data", play_text, "--output-dir", tmp_path / "m", "--json") == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["steps"] == 4
    assert "'loss'" in captured.err or "loss" in captured.err


STUDY = ["compare", "--positions", "none", "--seq-len", "16", "--factors", "1,2", "--max-steps", "2",
         "--batch-size", "2", "--vocab-size", "300"]


def test_compare_never_replaces_a_run_it_was_not_told_to(play_text, tmp_path, capsys):
    study = tmp_path / "study"
    assert posattn(*STUDY, "--data", play_text, "--output-dir", study) == 0
    before = snapshot(study)
    changed = [*STUDY[:-5], "3", *STUDY[-4:]]  # --max-steps 3
    assert posattn(*changed, "--data", play_text, "--output-dir", study) == 2
    assert "max_steps=2 (now 3)" in capsys.readouterr().err and snapshot(study) == before
    assert posattn(*changed, "--data", play_text, "--output-dir", study, "--overwrite") == 0
    results = json.loads((study / "none-seed0" / RUN_FILE).read_text())["results"]
    assert results["steps"] == 3


@pytest.fixture
def gpt2(tmp_path):
    folder = tmp_path / "gpt2"
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=32)).save_pretrained(folder)
    return folder


def test_convert_refuses_what_is_not_a_whole_gpt2(gpt2, finished_run, tmp_path, capsys):
    destination = tmp_path / "out"
    for source, message in ((finished_run, "model_type 'posattn'"), (tmp_path / "nothing", "cannot convert")):
        with pytest.raises(SystemExit) as exited:
            convert_main([str(source), str(destination)])
        assert exited.value.code == 2 and message in capsys.readouterr().err
    tensors = load_file(gpt2 / "model.safetensors")
    tensors.pop("transformer.h.0.mlp.c_fc.weight")
    from safetensors.torch import save_file

    save_file(tensors, gpt2 / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(SystemExit):
        convert_main([str(gpt2), str(destination)])
    assert "missing tensors: transformer.h.0.mlp.c_fc.weight" in capsys.readouterr().err
    assert not destination.exists()


def test_convert_onto_a_file_or_a_model_without_overwrite_is_refused(gpt2, run, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for destination in (tmp_path / "file", run):
        before = snapshot(tmp_path)
        with pytest.raises(SystemExit):
            convert_main([str(gpt2), str(destination)])
        assert snapshot(tmp_path) == before
    convert_main([str(gpt2), str(run), "--overwrite"])  # a model there is replaced when told to
    assert json.loads((run / "config.json").read_text())["position_embedding_type"] == "learned"
    assert not (run / RUN_FILE).exists() and not list(run.glob("checkpoint-*"))


def test_paths_are_recorded_resolved_and_resume_reads_them_from_anywhere(finished_run, play_text, tmp_path, monkeypatch,
                                                                        capsys):
    """--data and --tokenizer given relative to one folder are recorded as the files they name; --resume from
    another folder, which holds other files of the same names, reads the same ones."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    shutil.copy(play_text, one / "play.txt")
    shutil.copytree(finished_run, one / "tokens")
    (two / "play.txt").write_text("Another text of the same name, much shorter.\n" * 300)
    monkeypatch.chdir(one)
    with stopped_before_finishing():  # a run to continue: a finished one keeps no checkpoint
        assert posattn("train", "--max-steps", "4", "--seq-len", "16", "--batch-size", "2", "--eval-steps", "2",
                       "--quiet", "--data", "play.txt", "--tokenizer", "tokens", "--output-dir", "model") == 130
    options = json.loads((one / "model" / RUN_FILE).read_text())["options"]
    assert options["data"] == [str(one / "play.txt")] and options["tokenizer"] == str(one / "tokens")
    assert options["output_dir"] == str(one / "model")
    first = json.loads((finished_run / RUN_FILE).read_text())["results"]  # the same text and tokenizer
    monkeypatch.chdir(two)
    assert posattn("train", "--output-dir", one / "model", "--resume", "--max-steps", "6", "--quiet") == 0
    resumed = json.loads((one / "model" / RUN_FILE).read_text())
    assert resumed["options"]["data"] == [str(one / "play.txt")] and resumed["results"]["steps"] == 6
    assert resumed["results"]["validation_tokens"] == first["validation_tokens"]  # the same text, not two's
    # Given again from here, the same relative name is another file: that changes the run, and is refused.
    assert posattn("train", "--output-dir", one / "model", "--resume", "--max-steps", "8", "--data", "play.txt") == 2
    assert f"--data {one / 'play.txt'} (now --data {two / 'play.txt'})" in capsys.readouterr().err


@pytest.mark.parametrize("held, written", [("real", "link"), ("link", "real"), ("real", "spelled")])
def test_every_spelling_of_a_folder_shares_one_lock(held, written, run, play_text, tmp_path, capsys):
    """The lock is keyed on the folder's real path: a symbolic link to it, or a path through `..`, is the same
    folder, and a second writer through it is refused."""
    (tmp_path / "link").symlink_to(run)
    paths = {"real": run, "link": tmp_path / "link", "spelled": tmp_path / "link" / ".." / "model"}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(paths[held])], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        before = snapshot(run)
        assert posattn("train", *TINY_RUN, "--data", play_text, "--output-dir", paths[written], "--overwrite") == 2
        assert f"{run} is being written by another posattn process" in capsys.readouterr().err
        assert snapshot(run) == before
    finally:
        holder.kill()
        holder.wait()


def test_overwrite_through_a_symbolic_link_replaces_the_run_where_it_points(run, play_text, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(run)
    for position in ("alibi", "rotary"):  # twice: the second replaces the first, through the same link
        assert posattn("train", *TINY_RUN, "--data", play_text, "--output-dir", link, "--overwrite", "--position",
                       position) == 0
        assert link.is_symlink() and link.resolve() == run
        assert json.loads((run / "config.json").read_text())["position_embedding_type"] == position
        assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "model"]  # no lock, staging or old run left


def test_files_get_the_modes_an_ordinary_open_gives(finished_run, unfinished_run):
    """Everything in a run folder, whoever wrote it (this package's temporary files, safetensors, torch.save,
    matplotlib), is 0644 under umask 022, as a file that `open` makes."""
    umask = os.umask(0o022)
    os.umask(umask)
    modes = {str(path.relative_to(folder)): stat.S_IMODE(path.stat().st_mode)
             for folder in (finished_run, unfinished_run) for path in folder.rglob("*") if path.is_file()}
    assert {RUN_FILE, "model.safetensors", "config.json", "README.md", "training.png",
            "checkpoint-4/model.safetensors", "checkpoint-4/optimizer.pt"} <= set(modes)
    assert {name: mode for name, mode in modes.items() if mode != 0o666 & ~umask} == {}


def test_no_lock_is_left_and_a_refused_command_creates_nothing(play_text, tmp_path, capsys):
    # Refused under the study's lock (after its folders' checks): no lock file, and not the folders made for it.
    where = tmp_path / "new" / "deeper" / "study"
    assert posattn(*STUDY, "--data", play_text, "--output-dir", where, "--eval-tokens", "1") == 2
    assert "fewer than one window" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    # Refused because another writer holds the folder: its lock is the other's, and stays only while it is held.
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "m")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert posattn("train", *TINY_RUN, "--data", play_text, "--output-dir", tmp_path / "m") == 2
        assert sorted(p.name for p in tmp_path.iterdir()) == [".m.lock"]
    finally:
        holder.kill()
        holder.wait()
    # A killed holder leaves its lock file: it holds nothing, and the next writer takes it and removes it.
    assert posattn("train", *TINY_RUN, "--data", play_text, "--output-dir", tmp_path / "m") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_leftovers_of_a_killed_writer_block_nothing(run, play_text, tmp_path):
    """What this package leaves when killed (`.saving`, temporary files) is not a user's file: it does not stop
    --overwrite, and it is cleared when the folder is next written."""
    (run / ".saving").mkdir()
    (run / ".saving" / "config.json").write_text("{}")
    (run / f".{RUN_FILE}.0badcafe.tmp").write_text("{")
    assert posattn("train", *TINY_RUN, "--data", play_text, "--output-dir", run, "--overwrite", "--position", "alibi") == 0
    assert not (run / ".saving").exists() and not list(run.glob(".*.tmp"))
    # A folder holding nothing else is free: a new run goes there without --overwrite.
    free = tmp_path / "free"
    (free / ".saving").mkdir(parents=True)
    (free / ".config.json.12345678.tmp").write_text("")
    assert posattn("train", *TINY_RUN, "--data", play_text, "--output-dir", free) == 0
    assert sorted(p.name for p in free.iterdir() if p.name.startswith(".")) == []
