"""What a run logs: the Trainer's logging integrations (`--report-to`), the name it logs under, and the log history it
leaves in the run folder (`trainer_state.json`), which its training figure and the study's are drawn from.

`check_report_to` checks `--report-to` against the integrations transformers knows and the packages installed,
before any work. The default is `none`: a run needs no account, network or extra package, and every finished run
draws its own figure from the Trainer's log history anyway.
"""

import json
import os

from ..runfolder import read_run_record, sort_checkpoints

REPORT_TO_DEFAULT = "none"
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
    from transformers.integrations import integration_utils

    return list(integration_utils.INTEGRATION_TO_CALLBACK)


def integration_missing(name: str) -> str | None:
    """Why the integration `name` cannot run here (with the fix), or None when it can."""
    from transformers.integrations import integration_utils

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
        from transformers.integrations import get_available_reporting_integrations

        return get_available_reporting_integrations()
    problems = [problem for problem in map(integration_missing, names) if problem]
    if problems:
        raise ValueError("; ".join(problems))
    return names


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
