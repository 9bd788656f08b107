"""A run folder's one owner: what makes a folder a run, the lock a writer holds, and staged writes.

A *run folder* is what `posattn train` (or `convert`) writes: a model (config.json, weights, code, tokenizer,
card), the run file `posattn_run.json` (the options a run was started with, and its results once it finished) and
the Trainer's checkpoints. A folder is *free* when it does not exist or is empty. A folder with any other file is
neither free nor a run: nothing is written into it, with or without --overwrite.

This module knows nothing of what trains a run or reads one (training, the study, sharing all sit above it): a
study's folder (study/folder.py) is a folder of run folders built on the same rules.

What a killed writer of this package leaves (`files.LEFTOVERS`: `.saving`, temporary files) is never counted as a
user's file: it does not make a folder "not free", and it is removed when the folder is next claimed.

Paths reach this module resolved (`files.resolve_path`): a folder named through a symbolic link is the folder it
points to, so its lock, its staging folder and its swap are beside that folder, and the link stays.

Three rules keep a run from being lost:
- **One writer.** A process writing a run holds a lock beside it (`.NAME.lock`, `files.lock`, keyed on the real
  path) for as long as it writes, removed when it is done; a second one is refused at once, with a message naming
  the folder.
- **Replacing is staged.** A run that replaces another (--overwrite) is written into a staging folder beside the
  target (`.NAME.staging`) and swapped in only once it has finished: a failure at any point leaves the old run as it
  was, and `--resume` continues the new run where it stopped, in its staging folder. A new run trains in its own
  folder (nothing is there to lose), and so does a resumed one.
- **Finished files appear whole.** Final files are written under a temporary name (or in a temporary folder) and
  renamed into place, the run file last: a run whose save failed (a full disk) is an unfinished run, never a
  config.json without weights.
"""

import contextlib
import fnmatch
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

from . import files
from .common import notice, option

RUN_FILE = "posattn_run.json"  # the options a run was started with (read by --resume), and its results
PROGRESS_FILE = "progress.json"  # where training is (step, loss, time left), rewritten as it goes
# What a study measured of a finished run (`posattn compare`): written by the run itself once evaluated.
EVALUATION_FILE = "posattn_evaluation.json"
# The figures of a run, in its folder: its training (drawn when it finishes; the card shows it), and what the
# commands that draw a model write there unless told otherwise (plot-positions, plot-attention, demo context).
TRAINING_FIGURE = "training.png"
POSITIONS_FIGURE = "positions.png"
ATTENTION_FIGURE = "attention.png"
CONTEXT_FIGURE = "context.png"
# Everything a run folder may hold: the model, its code and card, the tokenizer, the run file, the checkpoints, the
# figures.
RUN_ENTRIES = (RUN_FILE, EVALUATION_FILE, PROGRESS_FILE, "config.json", "generation_config.json", "model.safetensors", "model-*.safetensors",
               "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
               "chat_template.jinja", "*.py", "README.md", "training_args.bin", "checkpoint-*",
               "trainer_state.json", TRAINING_FIGURE, POSITIONS_FIGURE, ATTENTION_FIGURE, CONTEXT_FIGURE,
               "runs")  # runs/: TensorBoard's event files (--report-to)


# ---- what a folder holds ----

sibling = files.sibling  # `.NAME<suffix>` beside a target: its lock, its staging folder


def staging_dir(target: str) -> str:
    return sibling(target, ".staging")


def entries(folder: str) -> list[str]:
    """What `folder` holds, less what killed writers of this package left there (`files.LEFTOVERS`)."""
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    return [name for name in names if not files.is_leftover(name)]


def foreign_entries(folder: str) -> list[str]:
    """What `folder` holds that a run does not write (a user's own files)."""
    return [name for name in entries(folder) if not any(fnmatch.fnmatch(name, pattern) for pattern in RUN_ENTRIES)]


def is_free(folder: str) -> bool:
    """The folder does not exist, or holds nothing (but leftovers of this package's writers)."""
    return not os.path.exists(folder) or (os.path.isdir(folder) and not entries(folder))


def is_run(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, RUN_FILE))


def holds_model(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "config.json"))


def check_output_dir(folder: str, flag: str | None = None) -> None:
    """A folder this process could create and write: not a file, under a folder it may write to. `flag`: how the
    message names the folder (default: the caller's output_dir)."""
    flag = flag or option("output_dir")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"{flag} {folder} is a file, not a folder: give a folder (it is made if needed).")
    check_writable(os.path.abspath(folder), flag)


def check_output_file(path: str, flag: str = "--output", example: str = "results.json") -> None:
    """A file this process could write: not a folder, not a symbolic link (the writer refuses it: checked before any
    work), under a folder it may write to (made if needed)."""
    files.refuse_link(path)
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path} is a folder: give a file name, e.g. {os.path.join(path, example)}.")
    check_writable(os.path.dirname(os.path.abspath(path)), flag, what=path)


def check_writable(folder: str, flag: str, what: str | None = None) -> None:
    """The nearest existing folder at or above `folder` is a folder this process may write into."""
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    what = what or folder
    if not os.path.isdir(existing):
        raise ValueError(f"{flag} {what}: {existing} is a file, so nothing can be written under it. Give another "
                         f"path.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {what}: {existing} is not writable by you. Give a path you may write to.")


# ---- the run file ----

def read_run_record(folder: str) -> dict | None:
    """`{"options": ..., "results": ...}` as recorded in `folder` (results None: not finished), or None when
    `folder` holds no run file. A damaged run file raises a ValueError that names it."""
    path = os.path.join(folder, RUN_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as file:
            run = json.load(file)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} cannot be read ({error}): the run file is damaged. Train the run again (with "
                         f"{option('overwrite', True)}).") from None
    if (not isinstance(run, dict) or not isinstance(run.get("options"), dict)
            or not isinstance(run.get("results"), (dict, type(None)))):
        raise ValueError(f"{path} is not a run file written by `posattn train` (expected an object with 'options' "
                         f"and 'results'): it was edited or damaged. Train the run again (with "
                         f"{option('overwrite', True)}).")
    return run


def read_run(folder: str) -> dict:
    """What `train` recorded in `folder` for a finished run: `{"options": ..., "results": ...}`."""
    run = read_run_record(folder)
    if run is None:
        raise ValueError(f"{folder} holds no {RUN_FILE}: it is not a folder written by `posattn train`.")
    if run["results"] is None:
        raise ValueError(f"the training run in {folder} has not finished: finish it with "
                         f"`posattn train --output-dir {folder} --resume`.")
    return run


def read_json_record(path: str) -> dict | None:
    """The JSON object a tool of this package wrote at `path`, or None when there is none, or when it cannot be read
    (a record that was damaged is made again by whoever writes it)."""
    try:
        with open(path, encoding="utf-8") as file:
            record = json.load(file)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def holds_whole_model(folder: str) -> bool:
    """`folder` holds a config and weights whose safetensors header covers the file (a deleted or truncated
    weights file is not a model)."""
    from safetensors import safe_open

    weights = sorted(name for name in entries(folder) if fnmatch.fnmatch(name, "model*.safetensors"))
    if not holds_model(folder) or not weights:
        return False
    try:
        for name in weights:
            with safe_open(os.path.join(folder, name), "pt"):
                pass
    except Exception:  # safetensors' SafetensorError, OSError
        return False
    return True


def write_run_file(folder: str, options: dict, results: dict | None) -> dict:
    run = {"options": options, "results": results}
    files.write_json(os.path.join(folder, RUN_FILE), run)
    return run


# ---- checkpoints ----

def sort_checkpoints(folder: str) -> list[str]:
    """The Trainer's checkpoints in `folder` (`checkpoint-<step>`), oldest first, as the Trainer orders them."""
    from transformers.trainer_utils import sort_checkpoints as in_trainer_order

    return in_trainer_order(folder)


def last_complete_checkpoint(folder: str) -> str | None:
    """The last checkpoint the Trainer finished writing, whose files can be read. It writes `trainer_state.json`
    last, so a run killed while saving leaves a checkpoint without it (or with a truncated one), whose weights or
    optimizer state may be missing or truncated: `get_last_checkpoint` would pick it, and resuming would fail or
    silently restart the optimizer. A checkpoint whose weights, optimizer.pt, scheduler.pt or rng_state*.pth are
    damaged is skipped too, with a notice naming the file."""
    return checkpoints_to_resume(folder)[0]


def resume_checkpoint(folder: str) -> str | None:
    """The checkpoint `--resume` continues from (`last_complete_checkpoint`), chosen before any work; None (start
    at step 0) when no checkpoint was finished. A ValueError when every finished checkpoint is damaged: the run
    cannot continue as it was."""
    checkpoint, damaged = checkpoints_to_resume(folder)
    if checkpoint is None and damaged:
        raise ValueError(f"{damaged[0]}: no checkpoint of the run in {folder} is whole, so it cannot continue. Train "
                         f"it again (with {option('overwrite', True)}, or in another {option('output_dir')}).")
    return checkpoint


def checkpoints_to_resume(folder: str) -> tuple[str | None, list[str]]:
    """The last whole checkpoint of `folder` (or None), and what is wrong with each finished one after it."""
    from transformers.trainer_callback import TrainerState

    damaged = []
    for checkpoint in reversed(sort_checkpoints(folder)):
        try:
            TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json"))
        except (OSError, ValueError):
            notice(f"skipping {checkpoint}: it has no readable trainer_state.json (the run stopped while saving it)")
            continue
        problem = damaged_file(checkpoint)
        if problem is None:
            return checkpoint, damaged
        notice(f"skipping {checkpoint}: {problem}")
        damaged.append(problem)
    return None, damaged


def damaged_file(checkpoint: str) -> str | None:
    """What is wrong with the files of a finished checkpoint that resuming reads, or None: weights (safetensors:
    the header must cover the file, as a truncated one does not) and the Trainer's torch files (zip archives with
    a CRC of every record: truncation and changed bytes are both seen)."""
    import zipfile

    from safetensors import safe_open

    for name in sorted(os.listdir(checkpoint)):
        path = os.path.join(checkpoint, name)
        try:
            if fnmatch.fnmatch(name, "*.safetensors"):
                with safe_open(path, "pt"):
                    pass
            elif name in ("optimizer.pt", "scheduler.pt") or fnmatch.fnmatch(name, "rng_state*.pth"):
                with zipfile.ZipFile(path) as archive:
                    bad = archive.testzip()
                if bad is not None:
                    raise ValueError(f"record {bad} does not match its checksum")
        except Exception as error:  # safetensors' SafetensorError, zipfile's BadZipFile, OSError, ...
            return f"{path} is damaged ({str(error).strip() or type(error).__name__})"
    return None


def remove_checkpoints(folder: str) -> None:
    for name in entries(folder):
        if fnmatch.fnmatch(name, "checkpoint-*"):
            shutil.rmtree(os.path.join(folder, name))


# ---- owning a folder: plan, lock, stage, swap ----

@dataclass(frozen=True)
class RunPlan:
    """Where a run writes: `work_dir` is `target` itself, or the staging folder beside it when the run replaces
    what `target` holds; `resume`: it continues the run in `work_dir`."""

    target: str
    work_dir: str
    resume: bool = False
    overwrite: bool = False
    stage_new: bool = False

    @property
    def staged(self) -> bool:
        return self.work_dir != self.target


def plan_run(target: str, resume: bool = False, overwrite: bool = False, stage_new: bool = False,
             flag: str | None = None) -> RunPlan:
    """Decide where a run into `target` writes, reading only: every process of a distributed run plans the same.
    Refuses, with the fix: a folder with files that are not a run; a run or model without `overwrite`; nothing to
    resume. `stage_new`: stage a new folder too (for writers that do not resume)."""
    flag = flag or option("output_dir")
    if resume and overwrite:
        raise ValueError(f"{option('resume')} continues the run in {flag} and {option('overwrite')} replaces it: "
                         f"choose one.")
    check_output_dir(target, flag)
    staging = staging_dir(target)
    if resume:
        work_dir = staging if is_run(staging) else target  # staging: a replacement run stopped before its swap
        if not is_run(work_dir):
            raise ValueError(f"{option('resume', True)}: {target} holds no run of `posattn train` to continue (no "
                             f"{RUN_FILE}). Start one without {option('resume')}.")
        files.refuse_links_in(work_dir)  # training writes there again, under names it chose (checkpoints, logs)
        return RunPlan(target, work_dir, resume=True)
    if is_free(target):
        return RunPlan(target, staging if stage_new else target, stage_new=stage_new)
    foreign = foreign_entries(target)
    if not (is_run(target) or holds_model(target)):
        raise ValueError(f"{flag} {target} holds files that are not a posattn run or model "
                         f"({', '.join(entries(target)[:5])}{', ...' if len(entries(target)) > 5 else ''}): nothing "
                         f"is written there, even with {option('overwrite', True)}. Choose another {flag} (or an "
                         f"empty folder).")
    if not overwrite:
        unfinished = f"; an unfinished replacement run is in {staging}" if is_run(staging) else ""
        resume_hint = "" if stage_new else f", {option('resume', True)} to continue its training"  # stage: no resume
        raise ValueError(f"{target} already holds a model or a training run{unfinished}. Pass "
                         f"{option('overwrite', True)} to replace it{resume_hint}, or choose another {flag}.")
    if foreign:
        raise ValueError(f"{target} holds a run and files that are not part of it ({', '.join(foreign)}), which "
                         f"{option('overwrite')} would remove: move them elsewhere first, or choose another {flag}.")
    return RunPlan(target, staging, overwrite=True, stage_new=stage_new)


@contextlib.contextmanager
def locked(target: str) -> Iterator[None]:
    """Hold `target`'s lock (`files.lock`: keyed on its real path, removed on release) while the block runs; refuse
    at once when another process holds it, and first a `target` that could not be a folder of this process's."""
    check_output_dir(target)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(files.lock(target))
        except files.Busy as busy:
            raise ValueError(f"{target} is being written by another posattn process (it holds {busy}): wait for it "
                             f"to finish, or choose another folder.") from None
        yield


@contextlib.contextmanager
def claim(plan: RunPlan) -> Iterator[str]:
    """Own `plan.target` for the block: its lock held, the plan checked again under it (another process may have
    written since), `plan.work_dir` made (a stale staging folder of a replacement started anew is cleared). When the
    block ends without error, a staged run is swapped in; on error the target stays as it was (and a staged run
    stays in its staging folder, for --resume; a writer that never resumes, `stage_new`, removes it). Yields the
    folder to write in. Main process only."""
    with locked(plan.target):
        again = plan_run(plan.target, plan.resume, plan.overwrite, plan.stage_new)
        if again != plan:
            raise ValueError(f"{plan.target} changed while this command started (another process wrote to it): "
                             f"run the command again.")
        if plan.staged and not plan.resume:
            shutil.rmtree(plan.work_dir, ignore_errors=True)
        os.makedirs(plan.work_dir, exist_ok=True)
        files.remove_leftovers(plan.work_dir)  # of a writer killed before: safe under the lock
        try:
            yield plan.work_dir
        except BaseException:
            if plan.stage_new:  # a writer that never resumes (convert): its staging folder is of no use
                shutil.rmtree(plan.work_dir, ignore_errors=True)
            raise
        if plan.staged:
            swap_in(plan.work_dir, plan.target)


def swap_in(staging: str, target: str) -> None:
    """Replace `target` with `staging`: two renames, then the old folder is removed. (Between the renames, for an
    instant, `target` does not exist; the old folder is `.NAME.replaced` beside it until the end.)"""
    replaced = sibling(target, ".replaced")
    shutil.rmtree(replaced, ignore_errors=True)
    if os.path.isdir(target):
        os.rename(target, replaced)
    os.rename(staging, target)
    shutil.rmtree(replaced, ignore_errors=True)


# ---- what a run logged ----

STATE_FILE = "trainer_state.json"  # the Trainer's log history, at the end of training and in each checkpoint


def run_name(output_dir: str) -> str:
    """The run's name in the trackers: the last two parts of its folder ('runs/posattn-tiny-alibi',
    'compare-quick/alibi-seed0'), so that the runs of different studies keep apart in one project."""
    parts = os.path.abspath(output_dir).split(os.sep)
    return "/".join(part for part in parts[-2:] if part)


def state_files(folder: str) -> list[str]:
    """The Trainer's states of the run in `folder`, newest first: its own `trainer_state.json` (written at the end of
    training), then those of its checkpoints (a run still training, or one stopped), last one first."""
    candidates = [os.path.join(folder, STATE_FILE)]
    candidates += [os.path.join(checkpoint, STATE_FILE) for checkpoint in reversed(sort_checkpoints(folder))]
    return [path for path in candidates if os.path.isfile(path)]


def read_log_history(folder: str) -> list[dict]:
    """What the Trainer logged during the run in `folder`: one dict per log (loss, learning_rate, eval_loss, step,
    num_input_tokens_seen, ...), from the newest state that can be read (a run killed while saving a checkpoint
    leaves a truncated one)."""
    if not os.path.isdir(folder):
        raise ValueError(f"{folder} is not a folder: give a folder written by `posattn train`.")
    paths = state_files(folder)
    if not paths:
        raise ValueError(f"{folder} holds no {STATE_FILE} (nor a checkpoint-*/{STATE_FILE}): give a folder written "
                         f"by `posattn train`.")
    for path in paths:
        try:
            with open(path) as file:
                history = json.load(file)["log_history"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not isinstance(history, list) or not history:
            continue
        return history
    raise ValueError(f"{folder}: no {STATE_FILE} there can be read or holds any logs ({', '.join(paths)}): the run "
                     f"stopped before its first log, or while saving.")


def recorded_baseline(folder: str) -> float | None:
    """The unigram baseline loss that `posattn train` recorded for the run in `folder`, once it finished."""
    run = read_run_record(folder)
    return ((run or {}).get("results") or {}).get("unigram_loss")


def recorded_position(folder: str) -> str | None:
    run = read_run_record(folder)
    return run["options"].get("position") if run else None
