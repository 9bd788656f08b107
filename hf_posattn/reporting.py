"""Watching a run: the Trainer's logging integrations (`--report-to`) and the figure of a run's training.

- `check_report_to` checks `--report-to` against the integrations transformers knows and the packages installed,
  before any work; the Trainer's own callbacks (TensorBoard, trackio, Weights & Biases, MLflow, ...) then do the
  logging, under the name `run_name` gives. The default is `none`: a run needs no account, network or extra package,
  and every finished run draws its own figure (below) from the Trainer's log history anyway.
- `read_log_history` reads what the Trainer logged (`trainer_state.json`: the run folder's, else its last
  checkpoint's); `write_training_figure` draws it as `training.png` in the run folder, which the model card shows;
  `plot_study_training` draws the runs of `posattn compare` in one figure; `posattn plot-training DIR [DIR ...]`
  draws existing runs (`add_plot_training` and `run_plot_training`).
"""

import argparse
import json
import os
import sys

from transformers.integrations import integration_utils
from transformers.trainer_utils import sort_checkpoints

from .files import resolve_path
from .runs import check_output_file, read_run_record


REPORT_TO_DEFAULT = "none"
TRAINING_FIGURE = "training.png"  # in a run folder; the model card shows it and `posattn push` uploads it
STATE_FILE = "trainer_state.json"

# What each integration of transformers needs, and how transformers checks that it is there. A name transformers
# adds later is checked with its `is_<name>_available` and offered as `pip install <name>`.
INTEGRATION_NEEDS = {
    "azure_ml": ("is_azureml_available", "azureml-sdk"),
    "comet_ml": ("is_comet_available", "comet-ml"),
    "dagshub": ("is_dagshub_available", "dagshub mlflow"),
    "flyte": ("is_flytekit_available", "flytekit flytekitplugins-deck-standard pandas"),
    "kubeflow": ("is_kubeflow_available", None),  # not a package: a Kubeflow TrainJob sets KUBEFLOW_TRAINER_SERVER_URL
}


def known_integrations() -> list[str]:
    """The names transformers' `report_to` takes, besides `all` and `none`."""
    return list(integration_utils.INTEGRATION_TO_CALLBACK)


def integration_missing(name: str) -> str | None:
    """Why the integration `name` cannot run here (with the fix), or None when it can."""
    check, requirement = INTEGRATION_NEEDS.get(name, (f"is_{name}_available", name))
    available = getattr(integration_utils, check, None)
    if available is None or available():
        return None  # transformers has no check for it: its callback says what it lacks
    if requirement is None:
        return (f"--report-to {name}: {name} reports only inside a Kubeflow TrainJob, which sets "
                f"KUBEFLOW_TRAINER_SERVER_URL (not set here); transformers adds it by itself there.")
    return f"--report-to {name}: {name} is not installed (or is too old for transformers): pip install -U {requirement}"


def check_report_to(names: str | list[str] | None) -> list[str]:
    """The integrations to pass to `TrainingArguments(report_to=...)`: `names` (a list, or one string; names may be
    separated by commas, in any case) checked, `none` (the default) as `[]`, `all` as every integration installed.
    Raises ValueError naming an unknown integration (with the known ones) or a missing package (with the
    `pip install` that fixes it). Idempotent: its result checks as itself."""
    given = [REPORT_TO_DEFAULT] if names is None else [names] if isinstance(names, str) else list(names)
    if not all(isinstance(name, str) for name in given):
        raise ValueError(f"report_to={names!r}: give integration names as strings, e.g. ['tensorboard'].")
    names = [part.strip().lower() for name in given for part in name.split(",") if part.strip()]
    if given and not names:
        raise ValueError(f"--report-to {' '.join(map(repr, given))}: no integration named; give 'none' for none.")
    known = known_integrations()
    unknown = [name for name in names if name not in (*known, "all", "none")]
    if unknown:
        raise ValueError(f"--report-to {' '.join(unknown)}: unknown integration; choose from none, all, "
                         f"{', '.join(known)}.")
    names = list(dict.fromkeys(names))
    if len(names) > 1 and ("none" in names or "all" in names):
        raise ValueError(f"--report-to {' '.join(names)}: 'none' and 'all' stand alone; give one of them, or the "
                         f"integrations to use.")
    if names == ["none"]:
        return []
    if names == ["all"]:
        return integration_utils.get_available_reporting_integrations()
    problems = [problem for problem in map(integration_missing, names) if problem]
    if problems:
        raise ValueError("; ".join(problems))
    return names


def run_name(output_dir: str) -> str:
    """The run's name in the trackers: the last two parts of its folder ('runs/posattn-tiny-alibi',
    'compare-quick/alibi-seed0'), so that the runs of different studies keep apart in one project."""
    parts = os.path.abspath(output_dir).split(os.sep)
    return "/".join(part for part in parts[-2:] if part)


def add_report_to_option(parser) -> None:
    """`--report-to NAME [NAME ...]`, for the training options of `posattn train` and `posattn compare`."""
    parser.add_argument("--report-to", nargs="+", metavar="NAME",
                        help=f"log the run with the Trainer's integrations: {', '.join(known_integrations())}; "
                             f"'all' for every one installed; 'none' (default) for none. TensorBoard writes to "
                             f"OUTPUT_DIR/runs (view with: tensorboard --logdir OUTPUT_DIR/runs)")


# ---- a run's history ----

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


def matplotlib_missing() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return True
    return False


def training_figure(folder: str) -> str | None:
    """The name of the run's training figure, relative to `folder`, when the folder holds one."""
    return TRAINING_FIGURE if os.path.isfile(os.path.join(folder, TRAINING_FIGURE)) else None


def write_training_figure(folder: str, history: list[dict] | None = None, baseline: float | None = None,
                          label: str | None = None) -> str | None:
    """Draw the training of a run as `training.png` in `folder`: its losses and learning rate (`history`, the
    Trainer's `state.log_history`; default: the one saved in `folder`), the unigram `baseline` loss (default: the
    one recorded in `folder`), titled with `label` (default: `run_name(folder)`). Training gives all three when it
    writes its final files in a temporary folder. Without matplotlib, prints a one-line note and returns None."""
    from .plots import plot_training

    if matplotlib_missing():
        note(f'no {TRAINING_FIGURE}: drawing it needs matplotlib (pip install "hf-posattn[plot]"); `posattn '
             f'plot-training DIR` draws it later.')
        return None
    output = os.path.join(folder, TRAINING_FIGURE)
    history = read_log_history(folder) if history is None else history
    baseline = recorded_baseline(folder) if baseline is None else baseline
    plot_training(output, {label or run_name(folder): history}, baseline=baseline)
    return output


def note(text: str) -> None:
    """Notes go to stderr: stdout is for results (which may be JSON)."""
    print(text, file=sys.stderr, flush=True)


def plot_study_training(study: dict, output: str) -> str | None:
    """The training curves of every run of a `posattn compare` study in one figure, one colour per scheme (its
    seeds share it), with the study's unigram baseline. Runs without a history (trained before runs kept it, their
    checkpoints removed) are left out with a note; None when none has one."""
    from .plots import plot_training

    runs = {}
    for record in study["runs"]:
        try:
            history = read_log_history(record["output_dir"])
        except ValueError as error:
            note(f"{record['position']}, seed {record['seed']}: left out of {os.path.basename(output)}: {error}")
            continue
        runs.setdefault(record["position"], []).append(history)
    if not runs:
        return None
    settings = study["settings"]
    plot_training(output, runs, baseline=study["unigram_baseline"]["loss"],
                  title=f"training of each scheme: {settings['preset']} preset, {settings['max_steps']} steps at "
                        f"L = {settings['seq_len']}")
    return output


# ---- posattn plot-training ----

def add_plot_training(subparsers):
    parser = subparsers.add_parser(
        "plot-training", help="draw the training and validation loss and learning rate of one or more runs (PNG)",
        description="Draw what the Trainer logged during each run in DIR (its trainer_state.json, else its last "
                    "checkpoint's): training and validation loss against tokens seen, the learning rate below, and "
                    "the unigram baseline; one colour per run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run folders written by `posattn train`")
    parser.add_argument("--output", default=TRAINING_FIGURE, metavar="FILE", help="the PNG to write")
    parser.set_defaults(run=run_plot_training)


def run_plot_training(args) -> int:
    from .plots import plot_training, pyplot

    pyplot()  # fails now if matplotlib is missing
    output = resolve_path(args.output, "--output")
    check_output_file(output, example=TRAINING_FIGURE)  # a folder, or under a file: refused before any drawing
    folders = {given: resolve_path(given, "DIR") for given in args.dirs}  # labelled as given, read as resolved
    if len(set(folders.values())) < len(args.dirs):
        raise ValueError(f"a run folder is given twice ({' '.join(args.dirs)}): give each once.")
    runs = {run_label(given, folder): read_log_history(folder) for given, folder in folders.items()}  # all read first
    baselines = {run_label(given, folder): recorded_baseline(folder) for given, folder in folders.items()}
    plot_training(output, runs, baseline={label: loss for label, loss in baselines.items() if loss is not None})
    print(f"wrote {output}")
    return 0


def run_label(given: str, folder: str) -> str:
    """The folder as `given`, with its position scheme (read from `folder`, resolved) when its name does not say
    it."""
    position = recorded_position(folder)
    return given if position is None or position in os.path.basename(os.path.normpath(given)) else \
        f"{given} ({position})"
