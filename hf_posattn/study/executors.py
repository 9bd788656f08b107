"""Where a study's runs run, and the one loop that runs them.

An executor is anything with `concurrent.futures`' shape: `submit(fn)` returns a future whose `result()` is what
`fn()` returned (or raises what it raised). Three ship with the study:
- `InProcess`: one run after another in this process (the default);
- `LocalProcesses(jobs)`: `jobs` runs at once on this machine, each in a process of its own with its share of the CPU
  threads, or a GPU of its own (`CUDA_VISIBLE_DEVICES`, round robin over the machine's GPUs), its output in the
  study's `logs/` folder;
- a Slurm job array through submitit (`study/slurm.py`).
Any other pool with this shape (Ray's, Dask's `Client.get_executor()`) plugs into `run_all` the same way.

What the runs report while they train is read from what they write (`runfolder.PROGRESS_FILE` in each run's folder),
so that the waiting command shows it whatever the executor.
"""

import concurrent.futures
import contextlib
import multiprocessing
import os
import sys
import threading
import time

from ..common import Failed, Interrupted, notice
from ..runfolder import PROGRESS_FILE, read_json_record, staging_dir
from .summary import DRAWN_RESULTS

PROGRESS_SECONDS = 60  # how often the waiting command shows where the running runs are


class InProcess:
    """Runs each run in this process, when it is submitted: today's study, one run after another; an error or Ctrl-C
    stops the study there (what it finished stays)."""

    starting = "training ..."  # what the study says of a run it submits

    def submit(self, fn, *args) -> concurrent.futures.Future:
        future = concurrent.futures.Future()
        future.set_result(fn(*args))
        return future


class LocalProcesses(concurrent.futures.ProcessPoolExecutor):
    """`jobs` runs at once, each in a fresh process (spawned: nothing of this process's torch state is shared) with
    `cores // jobs` CPU threads, or one GPU of the machine's (round robin: more jobs than GPUs share them). Each run's
    output goes to `LOGS/NAME.log` (a study's: `STUDY/logs`)."""

    def __init__(self, jobs: int, logs: str):
        import torch

        gpus = torch.cuda.device_count()
        threads = max(1, (os.cpu_count() or 1) // jobs)
        context = multiprocessing.get_context("spawn")
        slots = context.Queue()
        for slot in range(jobs):
            slots.put(str(slot % gpus) if gpus else None)
        super().__init__(max_workers=jobs, mp_context=context, initializer=set_up_worker,
                         initargs=(slots, threads))
        self.logs = logs
        where = f"{gpus} GPU{'s' if gpus > 1 else ''}" if gpus else f"{threads} CPU thread{'s' * (threads > 1)} each"
        self.starting = f"started ({jobs} at once on this machine, {where})"

    def log_of(self, run) -> str:
        return os.path.join(self.logs, f"{run.name}.log")

    def submit(self, fn, *args) -> concurrent.futures.Future:
        os.makedirs(self.logs, exist_ok=True)
        return super().submit(run_logged, fn, self.log_of(fn), *args)


def set_up_worker(slots, threads: int) -> None:
    """A worker's device and threads, set before torch is first imported in it."""
    gpu = slots.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)


def run_logged(fn, log: str, *args):
    """`fn(*args)` with this process's output (Python's and the libraries' below it) appended to `log`."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a", encoding="utf-8") as file:
        os.dup2(file.fileno(), 1), os.dup2(file.fileno(), 2)
        try:
            return fn(*args)
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


class RunFailed(Exception):
    """A run of the study raised: which, what, and where its output is."""

    def __init__(self, run, error: BaseException, log: str | None):
        self.run, self.error, self.log = run, error, log
        where = f" (its output: {log})" if log else ""
        super().__init__(f"{run.label} in {run.options.output_dir}: {type(error).__name__}: {error}{where}")


class RunsFailed(Failed):
    """Some runs of the study failed; the others finished and stay. The same command runs the failed ones again."""

    def __init__(self, failures: list[RunFailed], command: str | None):
        self.failures = failures
        again = f"run the same command again ({command})" if command else "call compare() again"
        lines = "\n".join(f"  {failure}" for failure in failures)
        super().__init__(f"{len(failures)} run{'s' * (len(failures) > 1)} of the study failed:\n{lines}\nThe runs "
                         f"that finished stay: once the cause is fixed, {again} to run the others and gather the "
                         f"study.")


def submit_all(runs: list, executor) -> dict:
    """Every run submitted to `executor` (in one batch where it batches them: one Slurm job array), or waited for
    where an earlier call submitted it and it still runs (`executor.attach`): the futures by run name."""
    futures = {}
    with getattr(executor, "batch", contextlib.nullcontext)():
        for number, run in enumerate(runs, 1):
            earlier = getattr(executor, "attach", lambda run: None)(run)
            notice(f"[{number}/{len(runs)}] {run.label}: "
                   + ("submitted before, still queued or running: waited for" if earlier else
                      getattr(executor, "starting", "submitted")))
            futures[run.name] = (run, earlier or executor.submit(run))
    getattr(executor, "submitted", lambda: None)()
    return futures


def run_all(runs: list, executor, wait: bool = True) -> tuple[dict, list[RunFailed]]:
    """Submit every run to `executor`, show where the running ones are while waiting, and return the records of the
    runs that finished (by run name) and the failures, each with where its output is (`executor.log_of(run)`, for
    an executor whose runs write it elsewhere than this terminal). `wait=False`: submit and return nothing."""
    records, failures = {}, []
    log_of = getattr(executor, "log_of", lambda run: None)
    with Watcher(runs, executor) as watcher:
        futures = submit_all(runs, executor)
        if not wait:
            return records, failures
        pending = dict(futures)
        lost = getattr(executor, "lost", lambda future: None)  # a job its scheduler forgot (Slurm)
        while pending:
            for name, (run, future) in list(pending.items()):
                if not future.done():
                    why = lost(future)
                    if why is not None:
                        del pending[name]
                        failures.append(RunFailed(run, RuntimeError(why), log_of(run)))
                        notice(f"{run.label}: failed ({why})")
                    continue
                del pending[name]
                try:
                    records[name] = future.result()
                except Interrupted:  # Ctrl-C stopped a run: the study, not one run, is what stops
                    raise
                except Exception as error:  # a run's failure: the others go on
                    failures.append(RunFailed(run, error, log_of(run)))
                    notice(f"{run.label}: failed ({type(error).__name__}: {error})")
                    continue
                watcher.finished(run, records[name])
            if pending:
                time.sleep(1)
    return records, failures


class Watcher(threading.Thread):
    """Shows, every `PROGRESS_SECONDS`, each running run's step, loss and time left, read from its progress file
    (a run is running when its file was written since the study started and it has not finished), and the study's
    time left: the slowest running run's time left, plus the runs not started, at the mean pace of those that
    finished (each executor's parallelism aside)."""

    def __init__(self, runs: list, executor=None):
        super().__init__(daemon=True)
        self.runs, self.started = runs, time.time()
        self.status = getattr(executor, "status", None)  # e.g. Slurm's jobs pending / running / done
        self.done, self.seconds = set(), []
        self.stopped = threading.Event()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()

    def finished(self, run, record: dict) -> None:
        self.done.add(run.name)
        self.seconds.append(record.get("train_seconds", 0) + record.get("evaluation_seconds", 0))
        line = run.kind.result_line(record["results"])
        if DRAWN_RESULTS in record:  # a twin: first what its table row shows
            line = f"on drawn positions {run.kind.result_line(record[DRAWN_RESULTS])}; on plain positions {line}"
        notice(f"{run.label}: {line} ({len(self.done)}/{len(self.runs)} done)")

    def run(self) -> None:
        while not self.stopped.wait(PROGRESS_SECONDS):
            lines = [line for line in map(self.progress_line, self.runs) if line]
            status = [f"  jobs: {self.status()}"] if self.status else []
            if lines or status:
                notice("\n".join(["where the runs are:", *status, *lines, self.time_left(lines)]))

    def progress_line(self, run) -> str | None:
        if run.name in self.done:
            return None
        for folder in (run.options.output_dir, staging_dir(run.options.output_dir)):
            path = os.path.join(folder, PROGRESS_FILE)
            with contextlib.suppress(OSError):
                if os.path.getmtime(path) < self.started:
                    continue
            progress = read_json_record(path)
            if progress:
                left = progress.get("seconds_left")
                loss = progress.get("loss")
                return (f"  {run.label}: step {progress['step']}/{progress['max_steps']}"
                        + (f", loss {loss:.3f}" if loss is not None else "")
                        + (f", {left / 60:.1f} min left" if left is not None else ""))
        return None

    def time_left(self, lines: list[str]) -> str:
        waiting = len(self.runs) - len(self.done) - len(lines)
        if not self.seconds:
            return f"  {len(self.done)}/{len(self.runs)} runs done, {waiting} waiting"
        pace = sum(self.seconds) / len(self.seconds)
        return (f"  {len(self.done)}/{len(self.runs)} runs done, {waiting} waiting: about {waiting * pace / 60:.0f} "
                f"min of runs left after the running ones")


