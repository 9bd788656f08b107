"""A study's runs as Slurm jobs, through submitit (one job array for all the runs a study has left to do).

    options = SlurmOptions(partition="gpu", time_min=120, gpus_per_run=1, extra=parse_extra(["account=abc"]))
    check_slurm(study_dir, options)           # before anything is submitted: clear errors, nothing half done
    executor = make_executor(folder, options)  # logs and submitit's files in FOLDER/<job id>/ (a study's: STUDY/slurm)
    jobs = submit_runs(executor, runs)            # one array; each job has submit/result's `.result()`
    job_counts(jobs)                              # {"pending": 3, "running": 2, "done": 0, "failed": 0}
    cancel_command(jobs)                          # "scancel 1234": for a user who stops waiting
    failure(jobs[0])                              # None, or which run failed and where its log is

A run is any picklable callable: calling it trains the run (continuing from the last checkpoint in its own folder if
there is one), evaluates it and returns its record. Each is wrapped in a `SlurmRun`, which submitit treats as
checkpointable: when Slurm warns a job that its time is nearly up or that it is preempted (USR2, `signal_delay_s`
before the end), submitit requeues the same `SlurmRun`, and the run, called again, continues from its checkpoint.

The jobs run `sys.executable` with the submitting environment (Slurm's default `--export=ALL`), so the package must
be installed where the nodes see it, and the study folder must be on a file system the nodes share: the jobs read
their submissions and write their runs, logs and results there.

submitit is optional (`pip install "hf-posattn[slurm]"`): this module imports without it, and asks for it only when a
job is to be checked, made or submitted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..common import Failed, option

INSTALL = 'pip install "hf-posattn[slurm]"'
# Folders that are each machine's own on a cluster: what a job on a compute node would find there is not what the
# login node wrote. The temporary folder of this process (TMPDIR) is added when the check runs.
NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm")
# Slurm's states, as `sacct` and submitit's `job.state` give them ("CANCELLED by 0" reads as CANCELLED).
PENDING_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED", "UNKNOWN", "READY"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING", "PREEMPTED"}


class SlurmUnavailable(Failed):
    """Slurm cannot be reached from here (submitit not installed, Slurm's commands missing or not answering): the
    message says what to do; the command line prints it without a traceback."""


LOGIN_NODE = "run the study from a machine of the cluster that submits jobs (a login node)"


def _submitit():
    try:
        import submitit
    except ImportError as error:
        raise SlurmUnavailable(f"running a study on Slurm needs submitit: {INSTALL}") from error
    return submitit


@dataclass(frozen=True)
class SlurmOptions:
    """How each run of a study is submitted: one job per run, in one job array.

    `time_min` is each job's time limit in minutes; a run that reaches it is requeued and continues from its last
    checkpoint, up to `max_timeouts` times (preemptions do not count). Slurm warns a job 90 s before its limit, and
    submitit counts every warning of a job whose limit is under 10 minutes as a timeout: with `time_min=2`, a run
    gets 30 s a start and fails after its third requeue ("timed-out too many times"). `extra` holds any other sbatch option by its long
    name, without the dashes (`{"account": "abc", "qos": "high", "exclusive": True}`): see `parse_extra`."""

    partition: str | None = None  # None: the cluster's default partition
    time_min: int = 60
    gpus_per_run: int = 0
    cpus_per_run: int = 1
    extra: dict = field(default_factory=dict)
    max_timeouts: int = 3
    job_name: str = "posattn"


def parse_extra(pairs) -> dict:
    """sbatch options from `key=value` strings (a bare `key` is a flag: `exclusive`): {"key": "value", ...}.
    Keys are sbatch's long option names; a leading `--` is allowed and dropped."""
    extra = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("-")
        if not key:
            raise ValueError(f"a Slurm option must read key=value (an sbatch option's long name): got {pair!r}")
        extra[key] = value.strip() if sep else True
    return extra


def check_shared_folder(folder) -> None:
    """Refuse a study folder that is each node's own on a cluster (under /tmp, /var/tmp, /dev/shm or this process's
    temporary folder): the jobs run on other machines and would neither find the study's files nor leave theirs
    where the study looks. ValueError says so."""
    path = Path(folder).expanduser().absolute()
    resolved = path.resolve()
    for local in (*NODE_LOCAL, tempfile.gettempdir()):
        for root in {Path(local), Path(local).resolve()}:
            if resolved == root or root in resolved.parents or path == root or root in path.parents:
                raise ValueError(
                    f"the study folder {path} is under {root}, which on a cluster is each node's own disk: Slurm "
                    f"jobs run on other nodes and would not find the study's files there, nor write their runs, "
                    f"logs and results where this command reads them. Give a study folder on a file system the "
                    f"nodes share (your home, project or scratch space).")


def node_kinds(env: dict | None = None) -> list[tuple[str, bool, int, int]]:
    """Each kind of node Slurm has, hidden partitions included, in `sinfo`'s order: (its partition, whether that is
    the default one, its CPUs, its GPUs)."""
    out = subprocess.run(["sinfo", "--noheader", "--all", "--format=%P %c %G"], capture_output=True, text=True,
                         env=env, timeout=60)
    if out.returncode != 0:
        raise SlurmUnavailable(f"Slurm did not answer (`sinfo` failed: {out.stderr.strip() or out.returncode}): "
                               f"{LOGIN_NODE}, where `sinfo` lists the partitions")
    kinds = []
    for line in out.stdout.splitlines():
        name, cpus, gres = line.split(maxsplit=2)
        kinds.append((name.rstrip("*"), name.endswith("*"), int(cpus.rstrip("+")), gpu_count(gres)))
    return kinds


def gpu_count(gres: str) -> int:
    """The GPUs in `sinfo`'s generic resources of a node: "gpu:4", "gpu:a100:4(S:0-1)", "(null)"."""
    counts = [resource.split("(")[0].rsplit(":", 1)[-1] for resource in gres.split(",") if resource.startswith("gpu:")]
    return sum(int(count) for count in counts if count.isdigit())


def partitions(env: dict | None = None) -> list[str]:
    """The partitions Slurm knows, hidden ones included, in `sinfo`'s order."""
    return list(dict.fromkeys(name for name, _, _, _ in node_kinds(env)))


def check_slurm(study_dir, options: SlurmOptions) -> None:
    """Everything that can be known before a job is submitted, each with an error that says what to do: the study
    folder on a shared file system, submitit installed, Slurm's commands on PATH, the partition there, and a node
    in it that can hold a run."""
    check_shared_folder(study_dir)
    _submitit()
    missing = [name for name in ("sinfo", "sbatch", "sacct", "srun") if shutil.which(name) is None]
    if missing:
        raise SlurmUnavailable(f"Slurm's commands are not here ({', '.join(missing)} not on PATH): {LOGIN_NODE}")
    kinds = node_kinds()
    known = list(dict.fromkeys(name for name, _, _, _ in kinds))
    if options.partition is not None and options.partition not in known:
        raise ValueError(f"Slurm has no partition {options.partition!r}; its partitions: "
                         f"{', '.join(known) or '(none)'}")
    if options.time_min < 1 or options.cpus_per_run < 1 or options.gpus_per_run < 0:
        raise ValueError(f"Slurm options out of range: time {options.time_min} min, {options.cpus_per_run} CPUs "
                         f"and {options.gpus_per_run} GPUs per run")
    sizes = [(cpus, gpus) for name, default, cpus, gpus in kinds
             if name == options.partition or (options.partition is None and default)]
    check_node_size(options, sizes)


def check_node_size(options: SlurmOptions, sizes: list[tuple[int, int]]) -> None:
    """A run asks for no more CPUs or GPUs than one node of the partition has (`sizes`: each kind of node's CPUs
    and GPUs): Slurm would otherwise hold its job pending forever (reason PartitionConfig) or refuse it."""
    if not sizes:  # sinfo said nothing of it: Slurm decides
        return
    partition = f"partition {options.partition}" if options.partition else "the default partition"
    most_cpus, most_gpus = max(cpus for cpus, _ in sizes), max(gpus for _, gpus in sizes)
    if options.cpus_per_run > most_cpus:
        raise ValueError(f"{option('cpus_per_run', options.cpus_per_run)}: the nodes of {partition} have at most "
                         f"{most_cpus} CPUs, so the jobs would never start. Give {option('cpus_per_run')} "
                         f"{most_cpus} or less, or another partition.")
    if options.gpus_per_run > most_gpus:
        raise ValueError(f"{option('gpus_per_run', options.gpus_per_run)}: the nodes of {partition} have "
                         f"{f'at most {most_gpus}' if most_gpus else 'no'} GPUs, so the jobs would never start. Give "
                         f"another partition (one with GPUs), or fewer GPUs per run.")


def log_folder(folder) -> Path:
    """Where submitit keeps each job's submission, result and logs: FOLDER/<job id>/ (an array task's id reads
    ARRAY_TASK)."""
    return Path(folder).absolute() / "%j"


def make_executor(folder, options: SlurmOptions):
    """A submitit SlurmExecutor for the study's runs, its files under `log_folder(folder)`."""
    submitit = _submitit()
    executor = submitit.SlurmExecutor(folder=log_folder(folder), max_num_timeout=options.max_timeouts)
    parameters = dict(job_name=options.job_name, time=options.time_min, cpus_per_task=options.cpus_per_run,
                      additional_parameters=dict(options.extra))
    if options.partition is not None:
        parameters["partition"] = options.partition
    if options.gpus_per_run:
        parameters["gpus_per_node"] = options.gpus_per_run  # one task per job: the node's GPUs are the run's
    executor.update_parameters(**parameters)
    return executor


class SlurmRun:
    """A study run as a Slurm job that can be requeued: calling it calls the run; `checkpoint` (which submitit calls
    when the job is warned of its end, before it requeues it) hands back the same run, which continues from the
    checkpoint its folder holds when it is called again.

    submitit treats any submitted callable with a `checkpoint` method as checkpointable; this one does not derive
    from submitit.helpers.Checkpointable so that the module imports without submitit."""

    def __init__(self, run):
        self.run = run

    def __call__(self):
        # Slurm gives the job `cpus_per_run` CPUs; without CPU binding the process would see (and use) the node's.
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus and _importable("torch"):
            import torch

            torch.set_num_threads(int(cpus))
        return self.run()

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(SlurmRun(self.run), *args, **kwargs)

    def __repr__(self) -> str:
        return f"SlurmRun({getattr(self.run, 'label', self.run)!r})"


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def submit_runs(executor, runs) -> list:
    """Submit `runs` as one job array (one task per run, in order); the submitit jobs, one per run, each with
    `.result()` (the run's record, or the job's error raised), `.done()`, `.state`, `.job_id` ("ARRAY_TASK").
    Where sbatch refuses the array (a resource the partition lacks), submitit's FailedJobError carries its words."""
    runs = list(runs)
    if not runs:
        return []
    with executor.batch():
        jobs = [executor.submit(SlurmRun(run)) for run in runs]
    return jobs


def cancel_command(jobs) -> str:
    """The command that cancels these jobs, for a user who stopped waiting for them: `scancel ARRAY_ID ...` (a whole
    array, or a job that is not in one)."""
    ids = dict.fromkeys(job.job_id.split("_")[0] for job in jobs)
    return "scancel " + " ".join(ids)


def job_counts(jobs) -> dict[str, int]:
    """How many jobs are pending (queued or requeued), running, done (finished with a result) or failed
    (finished without one: an error, cancelled, out of time or memory), from one `sacct` call for them all."""
    counts = {"pending": 0, "running": 0, "done": 0, "failed": 0}
    if not jobs:
        return counts
    jobs[0].watcher.update()  # one sacct for every job; the states below are read from what it said
    for job in jobs:
        state = job.watcher.get_state(job.job_id, mode="cache").split()[0].upper()
        if job.paths.result_pickle.exists():  # the run has ended (Slurm may still be tidying its job up)
            counts["failed" if _outcome(job) == "error" else "done"] += 1
        elif state in PENDING_STATES:
            counts["pending"] += 1
        elif state in RUNNING_STATES:
            counts["running"] += 1
        else:  # ended without a result: cancelled, timed out, killed, node failure...
            counts["failed"] += 1
    return counts


def _outcome(job) -> str:
    try:
        return job._get_outcome_and_result()[0]
    except Exception:
        return "error"


@dataclass(frozen=True)
class JobFailure:
    """A job that ended without its run's record: which run, the job, Slurm's last word on it, its logs, and the
    error (the run's traceback, or what submitit could tell of a job that was ended from outside)."""

    run: object
    job_id: str
    state: str
    stdout: Path
    stderr: Path
    error: str

    def __str__(self) -> str:
        label = getattr(self.run, "label", self.run)
        return (f"{label}: Slurm job {self.job_id} ended {self.state} without its result; its logs: {self.stdout} "
                f"and {self.stderr}")


def failure(job, run=None) -> JobFailure | None:
    """None for a job that returned its run's record; for one that failed (waited for if it has not ended), the run
    (`run`, else read back from the job's submission) and the paths of its logs."""
    error = job.exception()  # waits for the job's end
    if error is None:
        return None
    if run is None:
        try:
            submitted = job.submission().function
            run = getattr(submitted, "run", submitted)
        except Exception:  # the submission unreadable: name the job alone
            run = None
    # A run that raised wrote its error before its process ended: give Slurm a moment to say how the job ended.
    deadline = time.monotonic() + 30
    state = job.watcher.get_state(job.job_id, mode="force")
    while state.split()[0].upper() in RUNNING_STATES | PENDING_STATES and time.monotonic() < deadline:
        time.sleep(1)
        state = job.watcher.get_state(job.job_id, mode="force")
    return JobFailure(run=run, job_id=job.job_id, state=state, stdout=job.paths.stdout, stderr=job.paths.stderr,
                      error=str(error))


LOST_SECONDS = 30  # how long a job may be unknown to squeue and sacct before it is taken as cancelled


def queued_jobs() -> set[str]:
    """The ids of the jobs Slurm holds now (pending or running), array tasks one by one."""
    out = subprocess.run(["squeue", "--noheader", "--array", "--format=%i"], capture_output=True, text=True)
    return set(out.stdout.split()) if out.returncode == 0 else set()


SUBMITTED_FILE = "submitted.json"  # in STUDY/slurm/: the job of each run submitted, so that a later call waits for it


class SlurmExecutor:
    """The study's executor on Slurm (`study.executors.run_all` calls it): every run submitted in one batch is a task
    of one job array (`batch`), each a requeueable `SlurmRun`. The job of each run is recorded in the study folder,
    so that the same command, run again while they are queued or running (after Ctrl-C, or `--no-wait`), waits for
    them (`attach`) instead of submitting them twice."""

    def __init__(self, folder, options: SlurmOptions):
        self.folder, self.options = Path(folder), options  # the jobs' files: the study's STUDY/slurm
        self.executor = make_executor(folder, options)
        self.jobs: dict[str, object] = {}
        self.missing: dict[str, float] = {}  # job id: since when neither squeue nor sacct knows it (`lost`)
        self.starting = f"submitted as a Slurm job (partition {options.partition or 'the default'})"

    @property
    def record(self) -> Path:
        return self.folder / SUBMITTED_FILE

    @contextlib.contextmanager
    def batch(self):
        """submitit's batch (one job array), with sbatch's refusal of it said as bad input: nothing was submitted."""
        refused = _submitit().core.utils.FailedJobError
        try:
            with self.executor.batch():
                yield
        except refused as error:
            raise ValueError(f"Slurm refused the study's jobs, so none was submitted ({str(error).strip()}): check "
                             f"the Slurm options given (partition, time limit, CPUs and GPUs per run, the sbatch "
                             f"options).") from None

    def submit(self, run):
        job = self.executor.submit(SlurmRun(run))
        self.jobs[run.name] = job
        return job

    def submitted(self) -> None:
        """Record the job of every run submitted (their ids are known once the batch is submitted)."""
        from ..files import write_json

        earlier = self.recorded()
        write_json(str(self.record), {**earlier, **{name: job.job_id for name, job in self.jobs.items()}})

    def recorded(self) -> dict:
        from ..runfolder import read_json_record

        return read_json_record(str(self.record)) or {}

    def attach(self, run):
        """The job of `run` submitted by an earlier call, if Slurm still has it queued or running; else None."""
        job_id = self.recorded().get(run.name)
        if job_id is None:
            return None
        submitit = _submitit()
        job = submitit.SlurmJob(folder=log_folder(self.folder), job_id=job_id)
        state = job.watcher.get_state(job_id, mode="force").split()[0].upper()
        if state not in PENDING_STATES - {"UNKNOWN"} | RUNNING_STATES:
            return None
        self.jobs[run.name] = job
        return job

    def lost(self, job) -> str | None:
        """Why `job` will never end as far as submitit can tell, or None: an array task cancelled before it started
        leaves no trace in Slurm's accounting, so its state stays UNKNOWN and it is never "done". Once neither
        `squeue` nor `sacct` has known it for `LOST_SECONDS`, it is taken as cancelled."""
        state = job.watcher.get_state(job.job_id, mode="standard").split()[0].upper()
        if state != "UNKNOWN" or job.paths.result_pickle.exists() or job.job_id in queued_jobs():
            self.missing.pop(job.job_id, None)
            return None
        first = self.missing.setdefault(job.job_id, time.monotonic())
        if time.monotonic() - first < LOST_SECONDS:
            return None
        return (f"Slurm job {job.job_id} ended without a trace in its accounting (cancelled before it started?); "
                f"the same command submits its run again")

    def log_of(self, run) -> str | None:
        job = self.jobs.get(run.name)
        return None if job is None else f"{job.paths.stdout} and {job.paths.stderr}"

    def status(self) -> str:
        counts = job_counts(list(self.jobs.values()))
        return ", ".join(f"{count} {state}" for state, count in counts.items())

    def left_running(self) -> str:
        """What Ctrl-C of the waiting command says: the jobs go on; how to cancel them; how to gather them."""
        jobs = list(self.jobs.values())
        cancel = f" Cancel them with `{cancel_command(jobs)}`." if jobs else ""
        return f"The submitted Slurm jobs keep running.{cancel}"
