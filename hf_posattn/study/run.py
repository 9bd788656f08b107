"""`posattn compare`: train short, test long. How well does each position scheme work past the length it was trained
at?

One model per position scheme (and per seed), each with the same preset, data, tokenizer, steps, batch, learning
rate and seed, trained at length `L` with `train`; then each is scored at `L`, `2L`, `4L`, `8L` (as Press et al.
2022 evaluate), and the study writes its tables and figures in its folder.

    from hf_posattn.study.run import CompareOptions, compare
    study = compare(CompareOptions(quick=True))
    print(study["table"])

A study is three steps: the **plan** (every run described as data and checked, before any work: `plan.py`), the
**runs** (each trains, evaluates its own model and records that in its folder; `executors.py` runs them, here or in
other processes or on Slurm), and the **gather** (the runs' records read back, the tables and figures written). The
study's folder is owned like a run folder; runs done with the same options are reused, interrupted ones resumed, and
a run made with other options is never replaced without --overwrite.
"""

import dataclasses
import os
import time

from .. import arguments
from ..common import hardware, notice
from ..files import WriteFailed
from ..runfolder import EVALUATION_FILE, locked, read_json_record
from ..training.outcomes import TrainingInterrupted, TrainingWriteFailed
from .executors import InProcess, LocalProcesses, RunsFailed, run_all
from .folder import (
    LOGS_DIR,
    SLURM_DIR,
    check_study_tokenizer,
    plan_study,
    study_path,
    tokenizer_dir,
    write_study_start,
)
from .kind import study_kind
from .options import CompareOptions, resolve_study
from .plan import next_step, plan_runs
from .summary import summarize


class StudyInterrupted(TrainingInterrupted):
    """Ctrl-C stopped the study: what it finished stays, and the same command continues it."""

    def __init__(self, output_dir: str, command: str | None, elsewhere: str = ""):
        self.output_dir, self.checkpoint = output_dir, None
        again = f"run the same command again: {command}" if command else "call compare() again with the same options"
        Exception.__init__(self, f"study interrupted: its finished runs stay, and a run stopped in training keeps its "
                                 f"last checkpoint.{' ' + elsewhere if elsewhere else ''} To continue the study in "
                                 f"{output_dir}, {again} (finished runs are reused, the stopped one continues where it "
                                 f"was, and runs still queued or running are waited for).")


def make_executor(options: CompareOptions):
    """Where the runs run: Slurm jobs (`options.slurm`), `options.jobs` processes on this machine, or this process."""
    if options.slurm is not None:
        from .slurm import SlurmExecutor

        return SlurmExecutor(study_path(options.output_dir, SLURM_DIR), options.slurm)
    if options.jobs > 1:
        return LocalProcesses(options.jobs, study_path(options.output_dir, LOGS_DIR))
    return InProcess()


@arguments.checked(options=arguments.instance(CompareOptions), command=arguments.optional(arguments.text))
def compare(options: CompareOptions, command: str | None = None, executor=None) -> dict | None:
    """Plan, run and gather the study; write `compare.csv`, `compare.json`, `compare.md` and the figures in the
    study's folder and return the study (the JSON's content). Bad input raises `ValueError` before any training.
    `executor`: where the runs run, anything with `concurrent.futures`' `submit`/`result` (default: `make_executor`:
    Slurm jobs, `options.jobs` processes on this machine, or one run after another in this process). With
    `options.wait` False, the runs are submitted and None is returned: the same call later gathers them."""
    from ..figures.common import pyplot

    pyplot()  # without matplotlib, fail now rather than after training every model
    options = resolve_study(options)
    with locked(options.output_dir):  # one study at a time in a folder
        plan_study(options.output_dir)  # a free folder, or a study's: never a folder of other files
        owned = executor is None
        executor = make_executor(options) if owned else executor
        try:
            return run_study(options, command, executor)
        except (TrainingInterrupted, KeyboardInterrupt):  # Ctrl-C: the study, not one run, is what continues
            elsewhere = getattr(executor, "left_running", lambda: "")()
            raise StudyInterrupted(options.output_dir, command, elsewhere) from None
        except TrainingWriteFailed as stopped:
            again = f"run the same command again: {command}" if command else "call compare() again"
            raise WriteFailed(f"{stopped.failure}. The study stopped there; what it finished stays. Free some space, "
                              f"then {again}.") from stopped
        finally:
            if owned:  # ours to shut down (a pool's processes waited for)
                getattr(executor, "shutdown", lambda: None)()


def run_study(options: CompareOptions, command: str | None, executor) -> dict:
    """The study in `options.output_dir`, claimed by `compare`: the plan (every input and every run checked), the
    study file and tokenizer, the runs not done yet, then the gather."""
    start = time.perf_counter()
    kind = study_kind(options.task)
    check_study_tokenizer(options.output_dir, kind.tokenizer_source(options), options.overwrite)
    tokenizer, material = kind.prepare(options)
    runs = plan_runs(options, kind, material, len(tokenizer))
    steps = {run.name: next_step(run) for run in runs}  # every run is checked before any is trained
    write_study_start(options.output_dir, command, dataclasses.asdict(options), tokenizer,
                      kind.tokenizer_source(options))
    notice(f"comparing {', '.join(options.positions)} (seeds {', '.join(map(str, options.seeds))}"
           f"{'' if options.random_positions is None else f'; and on random positions from [0, {options.random_positions})'}"
           f"): trained at L = {options.seq_len} tokens for {options.max_steps} steps of {options.batch_size} "
           f"blocks, evaluated at {', '.join(map(str, options.lengths))}: {kind.describe(options, material)}")
    for position in options.positions:
        skipped = kind.skipped_lengths(runs[[run.position for run in runs].index(position)].options, options.lengths)
        if skipped:
            notice(f"{position}: not evaluated at {', '.join(map(str, skipped))}, {next(iter(skipped.values()))}")

    done = {run.name: read_json_record(os.path.join(run.options.output_dir, EVALUATION_FILE))
            for run in runs if steps[run.name] == "done"}
    for run in runs:
        if run.name in done:
            notice(f"{run.label}: reusing the finished run in {run.options.output_dir} (its evaluation is recorded)")
    records, failures = run_all([run for run in runs if run.name not in done], executor, wait=options.wait)
    if not options.wait:
        notice(f"submitted: the runs go on without this command. Run the same command again to wait for them and "
               f"gather the study (runs still queued or running are waited for, not submitted again).")
        return None
    if failures:
        raise RunsFailed(failures, command)
    records = [{**done, **records}[run.name] for run in runs]
    return gather(options, kind, material, records, command, time.perf_counter() - start)


def gather(options: CompareOptions, kind, material, records: list[dict], command: str | None,
           wall_seconds: float) -> dict:
    """The study from its runs' records: its table (one row per scheme, extension and twin), written with its
    figures by the study's kind. Reads no model."""
    report = {
        "command": command,
        "settings": {**dataclasses.asdict(options), "lengths": options.lengths,
                     "tokenizer": tokenizer_dir(options.output_dir), **kind.settings(options, material)},
        "hardware": hardware(),
        **kind.study_fields(material),
        "wall_seconds": wall_seconds,
        "train_seconds": sum(record["train_seconds"] for record in records),  # of every run, reused ones too
        "table": summarize(records, options.positions, options.lengths, kind),
        "runs": [{**record, "output_dir": os.path.join(options.output_dir, record["run"])} for record in records],
    }
    kind.write_outputs(report, options.output_dir)
    return report
