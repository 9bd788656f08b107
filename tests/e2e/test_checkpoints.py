"""Checkpoints and resume: a training run killed with SIGKILL (no chance to clean up) resumes from its last complete
checkpoint and ends where an uninterrupted run ends; the weights are only ever written as safetensors."""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import TINY_RUN, posattn, snapshot
from transformers.trainer_pt_utils import safe_globals

from hf_posattn.runfolder import RUN_FILE

# The tiny preset on short blocks: about 3 s of training for 200 steps on one thread, a checkpoint every 10 steps.
OPTIONS = ["--seq-len", "16", "--batch-size", "2", "--vocab-size", "300", "--max-steps", "200", "--save-steps", "10",
           "--eval-steps", "100", "--quiet"]


ENV = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")


def posattn_train(*args) -> list[str]:
    return [sys.executable, "-m", "hf_posattn", "train", *map(str, args)]


def complete_checkpoints(folder) -> list[int]:
    """Steps of the checkpoints the Trainer finished writing (trainer_state.json comes last)."""
    return sorted(int(path.parent.name.split("-")[1]) for path in folder.glob("checkpoint-*/trainer_state.json"))


def logged_losses(folder) -> dict:
    history = json.loads((folder / "trainer_state.json").read_text())["log_history"]  # a finished run's, at its end
    return {(entry["step"], kind): entry[kind] for entry in history for kind in ("loss", "eval_loss") if kind in entry}


def test_a_killed_run_resumes_and_ends_as_an_uninterrupted_one(user_text, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    process = subprocess.Popen(posattn_train("--data", user_text, "--output-dir", killed, *OPTIONS), env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not complete_checkpoints(killed):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    last = complete_checkpoints(killed)[-1]
    assert last < 200 and not (killed / "model.safetensors").exists()
    assert json.loads((killed / RUN_FILE).read_text())["results"] is None
    uninterrupted = subprocess.run(posattn_train("--data", user_text, "--output-dir", full, *OPTIONS), env=ENV,
                                   capture_output=True, text=True, timeout=300)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    # What a kill in the middle of a save leaves: a newer checkpoint folder with truncated weights and no
    # trainer_state.json (written last). Resuming from it would fail, or restart the optimizer without a word.
    partial = killed / f"checkpoint-{last + 1}"
    shutil.copytree(killed / f"checkpoint-{last}", partial, dirs_exist_ok=True)
    (partial / "trainer_state.json").unlink()
    (partial / "model.safetensors").write_bytes((partial / "model.safetensors").read_bytes()[:1000])

    resumed = subprocess.run(posattn_train("--output-dir", killed, "--resume", "--quiet"), env=ENV,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"skipping {partial}: it has no readable trainer_state.json" in resumed.stderr
    assert f"resuming from {killed / f'checkpoint-{last}'}" in resumed.stderr

    ours, theirs = (json.loads((folder / RUN_FILE).read_text())["results"] for folder in (killed, full))
    assert ours["steps"] == theirs["steps"] == 200 and ours["tokens_seen"] == theirs["tokens_seen"]
    assert ours["eval_loss"] == pytest.approx(theirs["eval_loss"], rel=1e-5)
    # Training losses are logged as means over the steps since the last log; the first log after resuming averages
    # only the steps since the resume, so it is left out.
    expected, got = logged_losses(full), logged_losses(killed)
    first_after = min(step for step, kind in expected if kind == "loss" and step > last)
    del expected[first_after, "loss"], got[first_after, "loss"]
    assert got == pytest.approx(expected, rel=1e-5)
    assert any(step > first_after for step, _ in expected)


def test_weights_are_written_as_safetensors_only(finished_run, unfinished_run):
    """What transformers 5.24's Trainer writes: the weights as safetensors, in the model folder and in every
    checkpoint; beside them in a checkpoint, its own state as torch pickles, which resuming reads back with
    `torch.load(weights_only=True)` (tensors, plain containers and, for the random state, numpy arrays: no code
    runs); and `training_args.bin`, a full pickle of the TrainingArguments that it never reads back. A finished run
    keeps no checkpoint; an unfinished one keeps them, for --resume."""
    binary = {".safetensors", ".pt", ".pth", ".bin"}
    final = {path.name for path in finished_run.iterdir() if path.suffix in binary}
    checkpoint = {path.name for path in (unfinished_run / "checkpoint-4").iterdir() if path.suffix in binary}
    assert final == {"model.safetensors", "training_args.bin"}
    assert not list(finished_run.glob("checkpoint-*"))
    assert checkpoint == {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"}
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        with safe_globals():  # the Trainer's allowlist: numpy arrays and dtypes, for the numpy random state
            torch.load(unfinished_run / "checkpoint-4" / name, weights_only=True)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(finished_run / "training_args.bin", weights_only=True)


def truncated(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def changed_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the data, not the archive's directory: only its checksum can tell
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name, damage", [("optimizer.pt", truncated), ("scheduler.pt", truncated),
                                          ("rng_state.pth", truncated), ("model.safetensors", truncated),
                                          ("optimizer.pt", changed_byte)])
def test_resume_skips_a_checkpoint_with_a_damaged_file_for_the_one_before(name, damage, unfinished_run, tmp_path,
                                                                         capsys):
    run = tmp_path / "model"
    shutil.copytree(unfinished_run, run)
    damage(run / "checkpoint-4" / name)
    assert posattn("train", "--output-dir", run, "--resume", "--max-steps", "6", "--quiet") == 0
    err = capsys.readouterr().err
    assert f"skipping {run / 'checkpoint-4'}: {run / 'checkpoint-4' / name} is damaged" in err, err
    assert f"resuming from {run / 'checkpoint-2'}" in err and "Traceback" not in err
    assert json.loads((run / RUN_FILE).read_text())["results"]["steps"] == 6


def test_resume_with_no_whole_checkpoint_left_is_refused_with_nothing_changed(unfinished_run, tmp_path, capsys):

    run = tmp_path / "model"
    shutil.copytree(unfinished_run, run)
    truncated(run / "checkpoint-4" / "rng_state.pth")
    truncated(run / "checkpoint-2" / "optimizer.pt")
    before = snapshot(tmp_path)
    assert posattn("train", "--output-dir", run, "--resume", "--max-steps", "6", "--quiet") == 2
    err = capsys.readouterr().err
    assert f"{run / 'checkpoint-4' / 'rng_state.pth'} is damaged" in err and "no checkpoint of the run" in err
    assert "Traceback" not in err and snapshot(tmp_path) == before


def test_a_full_disk_while_a_checkpoint_is_saved_stops_with_a_message_and_resume_finishes(user_text, tmp_path,
                                                                                         capsys):
    """The disk fills while the first checkpoint's weights are written (safetensors, whose error is no OSError):
    the command says what it could not write and how to continue, with no traceback; --resume, with room again,
    finishes the run."""
    from conftest import disk_full_past

    run = tmp_path / "model"
    with disk_full_past(1_000_000):  # the tokenizer and the run file fit; 13 MB of weights do not
        assert posattn("train", *TINY_RUN, "--data", user_text, "--output-dir", run) == 1
    err = capsys.readouterr().err
    assert f"posattn train: error: cannot write a checkpoint in {run}: File too large" in err, err
    assert f"continue with --resume and the same --output-dir {run}" in err
    assert "Traceback" not in err and not (run / "model.safetensors").exists()
    assert posattn("train", "--output-dir", run, "--resume", "--quiet") == 0
    assert json.loads((run / RUN_FILE).read_text())["results"]["steps"] == 4
