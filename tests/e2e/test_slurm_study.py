"""`posattn compare --slurm` against the real single-node Slurm cluster of the `slurm_cluster` fixture: a micro study
whose runs are jobs of one array gives the table the same study gives in this process; a job cancelled with scancel
is named with its run and logs, the study's lock still admits one study at a time, and the same command afterwards
finishes the study; a job warned of its end is requeued and its run continues from its checkpoint; a partition that
does not exist is refused before anything is submitted.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import play_file, posattn

from hf_posattn.runfolder import last_complete_checkpoint

TESTS = Path(__file__).resolve().parent.parent
MICRO = ["--positions", "alibi", "none", "--seq-len", "32", "--factors", "1,2", "--batch-size", "2",
         "--vocab-size", "300", "--eval-tokens", "2048"]


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    return play_file(tmp_path_factory, 60_000)


@pytest.fixture
def cluster(slurm_cluster, monkeypatch):
    """The cluster, with the repository on the PYTHONPATH its jobs inherit (they unpickle runs of this hf_posattn)."""
    path = [str(TESTS.parent), os.environ.get("PYTHONPATH")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, path)))
    yield slurm_cluster
    slurm_cluster.cancel_all_jobs()


def slurm(cluster, *extra) -> list[str]:
    return ["--slurm", "--partition", cluster.partition, "--time-limit", "15", "--cpus-per-run", "2", *extra]


def wait_for(condition, timeout=120, what="the condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met after {timeout} s"
        time.sleep(0.5)


def no_job_left(cluster):
    """A job whose run has returned its result still exits (Slurm shows it completing for a moment): the study
    leaves none behind once that moment has passed."""
    wait_for(lambda: cluster.jobs() == [], timeout=60, what="Slurm holding no job of the study")


def test_a_study_on_slurm_gives_the_table_of_the_same_study_in_this_process(cluster, text, tmp_path, request):
    here, there = tmp_path / "here", cluster.work / request.node.name
    assert posattn("compare", *MICRO, "--max-steps", "2", "--data", text, "--output-dir", here) == 0
    assert posattn("compare", *MICRO, "--max-steps", "2", "--data", text, "--output-dir", there,
                   *slurm(cluster)) == 0
    assert (there / "compare.md").read_text() == (here / "compare.md").read_text()
    assert sorted(os.listdir(there / "slurm"))  # submitit's files and the jobs' logs, in the study's folder
    no_job_left(cluster)


def test_a_cancelled_job_is_named_and_the_same_command_finishes_the_study(cluster, text, request, capsys):
    folder = cluster.work / request.node.name
    command = [sys.executable, "-m", "hf_posattn", "compare", *MICRO, "--max-steps", "40", "--data", str(text),
               "--output-dir", str(folder), *slurm(cluster)]
    waiting = subprocess.Popen(command, env={**os.environ, **cluster.env}, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(cluster.jobs()) == 2, what="two jobs submitted")
        # One study at a time in a folder, even while its runs are jobs elsewhere.
        assert posattn("compare", *MICRO, "--max-steps", "40", "--data", text, "--output-dir", folder) == 2
        assert "being written by another posattn process" in capsys.readouterr().err
        second = sorted(cluster.jobs())[-1]  # the second run waits for the node's CPUs: cancelled while pending
        cluster.run("scancel", second)
        _, err = waiting.communicate(timeout=600)
    finally:
        waiting.kill()
    assert waiting.returncode != 0
    assert "1 run of the study failed" in err and "none, seed 0" in err and str(folder / "slurm") in err
    assert (folder / "alibi-seed0" / "posattn_evaluation.json").exists()  # the other run finished and stays
    # The same command submits only what is left, and gathers the study.
    assert posattn("compare", *MICRO, "--max-steps", "40", "--data", text, "--output-dir", folder,
                   *slurm(cluster)) == 0
    err = capsys.readouterr().err
    assert "alibi, seed 0: reusing the finished run" in err and "[1/1] none, seed 0: submitted as a Slurm job" in err
    assert (folder / "compare.md").exists()
    no_job_left(cluster)


def test_a_job_warned_of_its_end_is_requeued_and_its_run_continues_from_its_checkpoint(cluster, text, request):
    folder = cluster.work / request.node.name
    command = [sys.executable, "-m", "hf_posattn", "compare", *MICRO, "--positions", "alibi", "--max-steps", "400",
               "--data", str(text), "--output-dir", str(folder), *slurm(cluster)]
    waiting = subprocess.Popen(command, env={**os.environ, **cluster.env}, stderr=subprocess.PIPE, text=True)
    try:
        run = folder / "alibi-seed0"
        # A whole one: a checkpoint folder appears before the Trainer has written all of it, and a run resumes
        # only from one that is whole.
        wait_for(lambda: last_complete_checkpoint(str(run)) is not None, timeout=300, what="a first whole checkpoint")
        [job] = cluster.jobs()
        cluster.run("scancel", "--signal=USR2", job)  # what Slurm sends before a time limit or a preemption
        _, err = waiting.communicate(timeout=900)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert "Restarts=1" in cluster.run("scontrol", "show", "job", job).stdout
    logs = "".join(path.read_text() for path in (folder / "slurm").rglob("*.err"))
    assert "resuming from" in logs and "checkpoint-" in logs  # not started again at step 0


def test_a_partition_that_does_not_exist_is_refused_before_anything_is_submitted(cluster, text, request, capsys):
    folder = cluster.work / request.node.name
    assert posattn("compare", *MICRO, "--data", text, "--output-dir", folder, "--slurm", "--partition",
                   "nowhere") == 2
    assert "nowhere" in capsys.readouterr().err
    assert cluster.jobs() == [] and not folder.exists()


@pytest.mark.parametrize("flags, says", [(["--partition", "debug"], "add --slurm"),
                                         (["--no-wait"], "needs --slurm"),
                                         (["--jobs", "2", "--slurm"], "choose one")])
def test_slurm_options_need_slurm_and_exclude_jobs(flags, says, text, tmp_path, capsys):
    assert posattn("compare", *MICRO, "--data", text, "--output-dir", tmp_path / "study", *flags) == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize("extra, said", [
    (["--cpus-per-run", "64"], "--cpus-per-run 64: the nodes of partition debug have at most"),
    (["--gpus-per-run", "1"], "--gpus-per-run 1: the nodes of partition debug have no GPUs"),
    (["--slurm-option", "no-such-option=1"], "Slurm refused the study's jobs, so none was submitted"),
])
def test_jobs_slurm_could_never_run_are_refused_and_none_is_left_queued(extra, said, cluster, text, request, capsys):
    """A run asking for more than a node has would wait in the queue forever; an option sbatch does not know makes
    it refuse the whole array: each is said (exit status 2), and Slurm holds no job of the study."""
    folder = cluster.work / request.node.name
    assert posattn("compare", *MICRO, "--data", text, "--output-dir", folder, *slurm(cluster)[:-2], *extra) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err, err
    assert cluster.jobs() == []

