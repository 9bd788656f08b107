"""A run folder has one owner and one life cycle: a folder with files that are not a run is never written; a
replacement (--overwrite) that fails at any phase leaves the old run byte-identical, and --resume finishes it;
a second writer is refused; a finished run is not trained again by --resume; bad input is refused before any
work, in the order a user fixes it."""

import contextlib
import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, Trainer

import hf_posattn.training as training
from hf_posattn import runs
from hf_posattn.cli import main
from hf_posattn.convert import main as convert_main
from hf_posattn.corpus import load_shakespeare
from hf_posattn.runs import RUN_FILE
from hf_posattn.training import TrainingDiverged, TrainingOptions, train

from test_cli import snapshot


FAST = ["--max-steps", "4", "--seq-len", "16", "--batch-size", "2", "--vocab-size", "300", "--eval-steps", "2",
        "--quiet"]


def posattn(*args) -> int:
    return main([str(arg) for arg in args])


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "play.txt"
    path.write_text(load_shakespeare()["train"][0]["text"][:20_000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def finished(text, tmp_path_factory):
    """A finished run (checkpoints at steps 2 and 4); tests copy it before changing anything."""
    folder = tmp_path_factory.mktemp("runs") / "model"
    assert posattn("train", *FAST, "--data", text, "--output-dir", folder) == 0
    return folder


@pytest.fixture
def run(finished, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(finished, folder)
    return folder


def options(folder, text, **changes) -> TrainingOptions:
    return TrainingOptions(output_dir=str(folder), data=[str(text)], max_steps=4, seq_len=16, batch_size=2,
                           vocab_size=300, eval_steps=2, quiet=True, **changes)


# ---- what is free ----

@pytest.mark.parametrize("files", [
    {"README.md": "my notes", "positional.py": "x = 1"},  # names a run also writes, but no run
    {"notes.txt": "mine"},
    {".hidden": ""},
    {"data/part.txt": "text"},
    {"checkpoint-7/state.json": "{}"},
])
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_with_files_that_are_not_a_run_is_never_written(files, overwrite, text, tmp_path, capsys):
    folder = tmp_path / "mine"
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(content)
    before = snapshot(folder)
    assert posattn("train", *FAST, "--data", text, "--output-dir", folder, *(["--overwrite"] * overwrite)) == 2
    assert "holds files that are not a posattn run" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        convert_main([str(tmp_path / "no-gpt2"), str(folder)] + ["--overwrite"] * overwrite)
    assert exited.value.code == 2
    assert snapshot(folder) == before and sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_a_run_with_foreign_files_is_not_overwritten(run, text, capsys):
    (run / "eval.json").write_text("{}")
    before = snapshot(run)
    assert posattn("train", *FAST, "--data", text, "--output-dir", run, "--overwrite") == 2
    assert "eval.json" in capsys.readouterr().err and snapshot(run) == before


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_an_output_dir_that_cannot_be_a_folder_is_refused(where, text, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    folder = tmp_path / "file" if where == "file" else tmp_path / "file" / "model"
    assert posattn("train", *FAST, "--data", text, "--output-dir", folder) == 2
    assert posattn("demo", "context", "--output-dir", folder, "--output", tmp_path / "c.png", "--steps", "1") == 2
    err = capsys.readouterr().err
    assert err.count(str(tmp_path / "file")) >= 2 and "Traceback" not in err
    assert (tmp_path / "file").read_text() == "x"


def test_inputs_are_checked_in_the_order_a_user_fixes_them(run, tmp_path, capsys):
    # The data is wrong and the folder already holds a run: the data is named first.
    assert posattn("train", *FAST, "--data", tmp_path / "missing.txt", "--output-dir", run) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{"text": broken\n')
    assert posattn("train", *FAST, "--data", bad, "--output-dir", run) == 2
    assert f"--data {bad}: cannot be read as json data" in capsys.readouterr().err
    assert posattn("evaluate", run, "--output", tmp_path, "--lengths", "16") == 2  # a folder, before any work
    assert f"--output {tmp_path} is a folder" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1e-3"])
def test_non_finite_or_non_positive_options_are_refused_up_front(value, text, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        posattn("train", *FAST, "--data", text, "--output-dir", tmp_path / "m", f"--learning-rate={value}")
    assert exited.value.code == 2 and "expected a positive number" in capsys.readouterr().err
    with pytest.raises(ValueError, match="learning_rate must be a positive number"):
        train(options(tmp_path / "m", text, learning_rate=float(value)))
    assert not (tmp_path / "m").exists()


def test_plot_positions_caps_the_positions(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        posattn("plot-positions", "--positions", "1000000", "--output", tmp_path / "p.png")
    assert exited.value.code == 2 and "at most 4096 positions" in capsys.readouterr().err


# ---- replacing a run is staged ----

def fail(*args, **kwargs):
    raise OSError(28, "No space left on device (injected)")


@contextlib.contextmanager
def saved_then_disk_full(folder):
    """The real `saved_whole`, failing once the files are saved, before they are renamed into place."""
    with runs.saved_whole(folder) as temporary:
        yield temporary
        raise OSError(28, "No space left on device (injected)")


def fail_after_training(original):
    def train_then_fail(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise KeyboardInterrupt
    return train_then_fail


PHASES = {
    "tokens": (training, "pack", fail),
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
def test_a_replacement_that_fails_at_any_phase_leaves_the_old_run_as_it_was(phase, run, text, monkeypatch):
    before = snapshot(run)
    owner, name, replacement = PHASES[phase]
    with monkeypatch.context() as patched:
        patched.setattr(owner, name, replacement)
        with pytest.raises(OSError, match="injected"):
            train(options(run, text, position="rotary", overwrite=True))
    assert snapshot(run) == before
    # The old run still loads as it was; a new --overwrite replaces it, and leaves nothing beside it.
    assert AutoModelForCausalLM.from_pretrained(run).config.position_embedding_type == "sinusoidal"
    train(options(run, text, position="alibi", overwrite=True))
    assert AutoModelForCausalLM.from_pretrained(run).config.position_embedding_type == "alibi"
    assert sorted(p.name for p in run.parent.iterdir()) == [".model.lock", "model"]


def test_an_interrupted_replacement_resumes_in_its_staging_folder(run, text, monkeypatch, capsys):
    before = snapshot(run)
    monkeypatch.setattr(Trainer, "train", fail_after_training(Trainer.train))
    with pytest.raises(KeyboardInterrupt):
        train(options(run, text, position="rotary", overwrite=True))
    monkeypatch.undo()
    assert snapshot(run) == before and (run.parent / ".model.staging" / RUN_FILE).is_file()
    assert posattn("train", "--output-dir", run, "--resume", "--quiet") == 0
    assert f"resuming from {run.parent / '.model.staging' / 'checkpoint-4'}" in capsys.readouterr().err
    assert AutoModelForCausalLM.from_pretrained(run).config.position_embedding_type == "rotary"
    assert not (run.parent / ".model.staging").exists()


# ---- one writer ----

HOLD_LOCK = """
import sys, time
from hf_posattn.runs import locked
with locked(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("command", ["train", "train-overwrite", "demo", "compare"])
def test_a_second_writer_is_refused(command, run, text, tmp_path, capsys):
    target = {"train": tmp_path / "new", "compare": tmp_path / "study"}.get(command, run)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        before = snapshot(run)
        arguments = {
            "train": ["train", *FAST, "--data", text, "--output-dir", target],
            "train-overwrite": ["train", *FAST, "--data", text, "--output-dir", run, "--overwrite"],
            "demo": ["demo", "context", "--output-dir", run, "--overwrite", "--steps", "1", "--output",
                     tmp_path / "c.png"],
            "compare": ["compare", "--positions", "none", "--seq-len", "16", "--factors", "1", "--max-steps", "1",
                        "--vocab-size", "300", "--data", text, "--output-dir", target],
        }[command]
        assert posattn(*arguments) == 2
        assert f"{target} is being written by another posattn process" in capsys.readouterr().err
        assert snapshot(run) == before
    finally:
        holder.kill()
        holder.wait()


# ---- resume ----

def test_a_finished_run_given_resume_says_so(run, capsys):
    before = snapshot(run)
    assert posattn("train", "--output-dir", run, "--resume", "--quiet") == 2
    err = capsys.readouterr().err
    assert "holds a finished run (4 steps): there is nothing to resume" in err and "--max-steps 8" in err
    assert snapshot(run) == before
    assert posattn("train", "--output-dir", run, "--resume", "--max-steps", "6", "--quiet") == 0
    assert json.loads((run / RUN_FILE).read_text())["results"]["steps"] == 6


def test_a_run_killed_after_its_last_checkpoint_resumes_to_the_uninterrupted_result(finished, run):
    """What a kill between the last checkpoint and the end leaves: the checkpoints, the run file without results,
    no model (or a model whose save was cut short)."""
    for name in ("model.safetensors", "config.json", "README.md"):
        (run / name).unlink()
    record = json.loads((run / RUN_FILE).read_text())
    (run / RUN_FILE).write_text(json.dumps({**record, "results": None}))
    assert posattn("train", "--output-dir", run, "--resume", "--quiet") == 0
    ours, theirs = (json.loads((folder / RUN_FILE).read_text())["results"] for folder in (run, finished))
    assert ours["steps"] == theirs["steps"] == 4 and ours["tokens_seen"] == theirs["tokens_seen"]
    assert ours["eval_loss"] == pytest.approx(theirs["eval_loss"], rel=1e-6)
    assert ours["sample"] == theirs["sample"]
    mine, reference = load_file(run / "model.safetensors"), load_file(finished / "model.safetensors")
    assert all(torch.equal(mine[name], reference[name]) for name in reference)


# ---- NaN ----

def test_a_run_whose_loss_becomes_nan_stops_and_keeps_its_last_good_checkpoint(text, tmp_path, capsys):
    folder = tmp_path / "model"
    assert posattn("train", *FAST[:-3], "--max-steps", "20", "--save-steps", "1", "--eval-steps", "20",
                   "--learning-rate", "1e30", "--data", text, "--output-dir", folder, "--quiet") == 2
    err = capsys.readouterr().err
    assert "became" in err and "NaN" in err or "nan" in err, err
    assert "the last good checkpoint" in err and "--learning-rate" in err
    assert not (folder / "model.safetensors").exists()
    checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    assert checkpoints, "the checkpoints before the NaN step are kept"
    for checkpoint in checkpoints:
        assert all(torch.isfinite(t).all() for t in load_file(checkpoint / "model.safetensors").values())
    assert json.loads((folder / RUN_FILE).read_text())["results"] is None


def test_training_diverged_is_a_value_error_with_the_fix():
    error = TrainingDiverged("runs/x", 7, "the training loss became nan", 1e30, "runs/x/checkpoint-6")
    assert isinstance(error, ValueError) and "step 7" in str(error) and "runs/x/checkpoint-6" in str(error)


# ---- --json ----

def test_train_json_is_alone_on_stdout(text, tmp_path, capsys):
    arguments = [a for a in FAST if a != "--quiet"]  # with the progress bar and the Trainer's logs
    assert posattn("train", *arguments, "--data", text, "--output-dir", tmp_path / "m", "--json") == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["steps"] == 4
    assert "'loss'" in captured.err or "loss" in captured.err


# ---- compare ----

STUDY = ["compare", "--positions", "none", "--seq-len", "16", "--factors", "1,2", "--max-steps", "2",
         "--batch-size", "2", "--vocab-size", "300"]


def test_compare_never_replaces_a_run_it_was_not_told_to(text, tmp_path, capsys):
    study = tmp_path / "study"
    assert posattn(*STUDY, "--data", text, "--output-dir", study) == 0
    before = snapshot(study)
    changed = [*STUDY[:-5], "3", *STUDY[-4:]]  # --max-steps 3
    assert posattn(*changed, "--data", text, "--output-dir", study) == 2
    assert "max_steps=2 (now 3)" in capsys.readouterr().err and snapshot(study) == before
    assert posattn(*changed, "--data", text, "--output-dir", study, "--overwrite") == 0
    results = json.loads((study / "none-seed0" / RUN_FILE).read_text())["results"]
    assert results["steps"] == 3


# ---- convert ----

@pytest.fixture
def gpt2(tmp_path):
    folder = tmp_path / "gpt2"
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=32)).save_pretrained(folder)
    return folder


def test_convert_refuses_what_is_not_a_whole_gpt2(gpt2, finished, tmp_path, capsys):
    destination = tmp_path / "out"
    for source, message in ((finished, "model_type 'posattn'"), (tmp_path / "nothing", "cannot convert")):
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
