"""What a run logs to: the Trainer's logging integrations (`--report-to`). Its name in them and the log history it
leaves in its folder are the run folder's (`runfolder.run_name`, `runfolder.read_log_history`).

`check_report_to` checks `--report-to` against the integrations transformers knows and the packages installed,
before any work. The default is `none`: a run needs no account, network or extra package, and every finished run
draws its own figure from the Trainer's log history anyway.
"""

REPORT_TO_DEFAULT = "none"


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
