"""The study's Slurm executor (hf_posattn.study.slurm) against a real single-node Slurm cluster (the `slurm_cluster`
fixture: munge, MariaDB, slurmdbd, slurmctld, slurmd), with a toy run (tests/slurm_toy.py) in place of a study's
runs: one job array for all the runs, a job cancelled with scancel named as failed with its run and log, a job warned
of its end (USR2, as Slurm does before a time limit or a preemption) requeued and continuing from what its folder
holds, and the errors that come before anything is submitted.
"""

import os
import time
from pathlib import Path

import pytest

from hf_posattn.study.slurm import (
    SlurmOptions,
    SlurmRun,
    cancel_command,
    check_shared_folder,
    check_slurm,
    failure,
    job_counts,
    make_executor,
    parse_extra,
    partitions,
    submit_runs,
)
from slurm_cluster import SlurmCluster, missing_binaries
from slurm_toy import CountingRun, count, starts

TESTS = Path(__file__).resolve().parent.parent
# A limit of 10 minutes or more: submitit counts every USR2 of a job with a shorter one as a timeout.
TIME_MIN = 15


@pytest.fixture
def study(slurm_cluster, request, monkeypatch):
    """A fresh folder for a test's jobs (a study folder: not under /tmp), and tests/ and the repository on the
    PYTHONPATH that the jobs inherit from this process, so that a job imports the toy run it unpickles, and the same
    hf_posattn as the tests, whatever the environment's installed copy points to."""
    path = [str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, path)))
    folder = slurm_cluster.work / request.node.name
    folder.mkdir()
    yield folder
    slurm_cluster.cancel_all_jobs()  # a test that failed half way leaves no job to slow down the next ones


def wait_for(condition, timeout=60, what="the condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met after {timeout} s"
        time.sleep(0.3)


def test_runs_go_as_one_array_and_return_their_results(slurm_cluster, study):
    options = SlurmOptions(partition=slurm_cluster.partition, time_min=TIME_MIN,
                           extra=parse_extra(["comment=posattn-test"]))
    check_slurm(study, options)
    runs = [CountingRun(str(study / f"run{i}"), steps=2 + i) for i in range(2)]  # the node runs 2 jobs at once
    jobs = submit_runs(make_executor(study / "slurm", options), runs)

    # One array, a task per run in order: "ARRAY_0", "ARRAY_1".
    arrays = {job.job_id.split("_")[0] for job in jobs}
    assert len(arrays) == 1 and [job.job_id.split("_")[1] for job in jobs] == ["0", "1"], [j.job_id for j in jobs]
    assert cancel_command(jobs) == f"scancel {arrays.pop()}"
    # The free-form options reached Slurm.
    assert "Comment=posattn-test" in slurm_cluster.run("scontrol", "show", "job", jobs[0].job_id).stdout

    results = [job.result() for job in jobs]
    assert [r["steps"] for r in results] == [2, 3]
    assert all(r["started_at"] == 0 for r in results)
    # The job imported the toy from tests/, through the PYTHONPATH it inherited.
    assert {Path(r["module"]) for r in results} == {TESTS / "slurm_toy.py"}
    assert job_counts(jobs) == {"pending": 0, "running": 0, "done": 2, "failed": 0}
    assert all(failure(job) is None for job in jobs)
    # submitit's files and the jobs' logs are in the study folder, a folder per job.
    for job in jobs:
        assert job.paths.stdout.is_file() and job.paths.stdout.parent == study / "slurm" / job.job_id


def test_a_cancelled_job_and_a_failing_run_are_named_with_their_logs(slurm_cluster, study):
    options = SlurmOptions(partition=slurm_cluster.partition, time_min=TIME_MIN)
    slow = CountingRun(str(study / "slow"), steps=1000, seconds=0.2)
    failing = CountingRun(str(study / "failing"), steps=1, fail=True)
    cancelled, failed = submit_runs(make_executor(study / "slurm", options), [slow, failing])

    wait_for(lambda: count(slow.folder) >= 1, what="the slow run's first step")
    slurm_cluster.run("scancel", cancelled.job_id)

    report = failure(cancelled)  # waits for the job's end
    assert report is not None and report.run == slow and report.job_id == cancelled.job_id
    assert report.state.startswith("CANCELLED"), report.state
    assert report.stderr == study / "slurm" / cancelled.job_id / f"{cancelled.job_id}_0_log.err"
    assert "CANCELLED" in report.stderr.read_text()  # slurmstepd says so in the job's own log
    assert cancelled.job_id in str(report) and str(report.stderr) in str(report)
    assert count(slow.folder) < 1000  # it did not run to its end

    report = failure(failed)
    assert report is not None and report.run == failing and report.state == "FAILED", report
    assert "failing as asked" in report.error and "failing as asked" in report.stderr.read_text()
    assert job_counts([cancelled, failed]) == {"pending": 0, "running": 0, "done": 0, "failed": 2}


def test_a_job_warned_of_its_end_is_requeued_and_continues(slurm_cluster, study):
    """USR2 is what Slurm sends before a job's time limit (submitit asks for it `signal_delay_s` ahead) and what a
    preemption amounts to here: the job checkpoints (SlurmRun hands back the same run), requeues itself and exits,
    and the requeued array task calls the run again, which continues from the count its folder holds."""
    options = SlurmOptions(partition=slurm_cluster.partition, time_min=TIME_MIN)
    long = CountingRun(str(study / "long"), steps=12, seconds=0.4)
    short = CountingRun(str(study / "short"), steps=2)
    warned, other = submit_runs(make_executor(study / "slurm", options), [long, short])

    wait_for(lambda: count(long.folder) >= 3, what="three steps of the long run")
    slurm_cluster.run("scancel", "--signal=USR2", warned.job_id)
    # Requeued: Slurm holds it back (its credential must expire first), then runs it again, the same array task.
    wait_for(lambda: len(starts(long.folder)) == 2, timeout=90, what="the requeued job's start")

    result = warned.result()
    first, second = starts(long.folder)
    assert first == 0 and second >= 3, starts(long.folder)  # it continued; it did not start again at 0
    assert result["started_at"] == second and result["steps"] == 12
    # Slurm requeued the array task itself (same id), once.
    assert "_" in warned.job_id and "Restarts=1" in slurm_cluster.run("scontrol", "show", "job", warned.job_id).stdout
    assert "SIGUSR2" in warned.paths.stderr.read_text()  # submitit's own account of the signal
    # The other task of the array ran once, untouched.
    assert other.result()["steps"] == 2 and starts(short.folder) == [0]


def test_an_unknown_partition_is_refused_before_anything_is_submitted(slurm_cluster, study):
    assert slurm_cluster.partition in partitions()
    with pytest.raises(ValueError, match=r"no partition 'gpu-nonexistent'; its partitions: debug"):
        check_slurm(study, SlurmOptions(partition="gpu-nonexistent", time_min=TIME_MIN))
    assert slurm_cluster.jobs() == [] and not (study / "slurm").exists()


@pytest.mark.parametrize("folder", ["/tmp/study", "/dev/shm/study"])
def test_a_study_folder_on_a_node_local_disk_is_refused(folder):
    with pytest.raises(ValueError, match="each node's own disk.*file system the nodes share"):
        check_slurm(folder, SlurmOptions(partition="debug"))
    check_shared_folder(TESTS)  # the repository's own folder is fine


def test_slurm_run_hands_back_the_same_run_to_requeue():
    run = CountingRun("/nonexistent", steps=1)
    again = SlurmRun(run).checkpoint()
    assert isinstance(again.function, SlurmRun) and again.function.run == run


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(bool(missing_binaries()) and not os.environ.get("CI"), reason="Slurm is not installed")
def test_the_cluster_leaves_nothing_running_when_its_block_fails(tmp_path):
    """The test cluster's own promise: a block that raises still ends with every job cancelled and every daemon,
    and the job's processes (which are not the daemons' children), gone."""
    pid_file = tmp_path / "job.pid"
    with pytest.raises(RuntimeError, match="a test failing"):
        with SlurmCluster(tmp_path / "cluster") as cluster:
            daemons = cluster.pids
            assert set(daemons) == {"munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd"}
            cluster.run("sbatch", f"--output={tmp_path}/job.out", "--wrap", f"echo $$ > {pid_file}; exec sleep 600")
            wait_for(pid_file.exists, what="the job's start")
            job = int(pid_file.read_text())
            stepd = int(Path(f"/proc/{job}/stat").read_text().rsplit(")", 1)[1].split()[1])  # its parent
            assert alive(job) and "slurmstepd" in Path(f"/proc/{stepd}/cmdline").read_text()
            raise RuntimeError("a test failing")
    # A cancelled job's slurmstepd tidies up for a moment after Slurm stops listing the job (seconds, on a busy
    # machine); nothing may be left once that moment is over.
    processes = dict(daemons, job=job, slurmstepd=stepd)
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in processes.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = {name: pid for name, pid in processes.items() if alive(pid)}
    assert not left, f"still running: {left}"
