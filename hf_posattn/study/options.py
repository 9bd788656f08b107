"""What a study compares (`CompareOptions`), its two budgets (`STUDIES`), each default written once, here, and
`resolve_study`, which fills them in and checks them before any work.

Light to import (no Trainer, no datasets): the command line prints its help from the budgets and defaults here.
"""

import dataclasses
import os
from dataclasses import dataclass

from .. import arguments
from ..arguments import one_or_more, optional
from ..common import option
from ..data.tasks import LANGUAGE_MODELLING
from ..files import resolve_path
from ..model import positional
from ..model.positional import POSITION_EMBEDDING_TYPES, POSITION_SCHEMES
from ..training.options import FIELD_CHECKS as TRAINING_FIELD_CHECKS
from ..training.options import TrainingOptions, check_random_positions, complete, position_limit, resolve_paths
from .slurm import SlurmOptions, check_slurm


# The schemes a study trains unless --positions says otherwise. The default study trains every built-in scheme, in
# the registry's order, read from the registry so that a scheme added to positional.py joins it (a scheme registered
# at run time is selected with --positions: it would change the study's time); --quick the five that Press et al.
# (2022) and the first studies compared.
DEFAULT_POSITIONS = tuple(name for name, scheme in POSITION_SCHEMES.items() if scheme.__module__ == positional.__name__)
QUICK_POSITIONS = ("sinusoidal", "learned", "rotary", "alibi", "none")

# The two budgets of each kind of study, sized to fit on 2 CPU cores with one seed (docs/study.md and docs/tasks.md
# have their measured times); each further seed costs as much again. Options given explicitly win. A synthetic
# task's runs take the preset and budget of the `task` preset (TrainingOptions), at its L = 64.
STUDIES = {
    "default": {"positions": DEFAULT_POSITIONS, "seq_len": 128, "max_steps": 300, "batch_size": 16,
                "eval_tokens": 65536, "output_dir": os.path.join("runs", "compare")},
    "quick": {"positions": QUICK_POSITIONS, "seq_len": 64, "max_steps": 150, "batch_size": 16, "eval_tokens": 16384,
              "output_dir": os.path.join("runs", "compare-quick")},
}
TASK_STUDIES = {
    "default": {"positions": DEFAULT_POSITIONS, "output_dir": os.path.join("runs", "compare-{task}")},
    "quick": {"positions": QUICK_POSITIONS, "output_dir": os.path.join("runs", "compare-{task}-quick")},
}

# The study's budgets by task: language modelling's, and every synthetic task's.
BUDGETS = {LANGUAGE_MODELLING: STUDIES}

# Context extension applied to a trained rotary-type model at evaluation, without retraining, at the study's longest
# factor: transformers' rope_type and what the table's row says.
EXTENSIONS = {"linear": "linear interpolation", "dynamic": "dynamic NTK", "yarn": "YaRN"}

# What every training run of a study shares.
SHARED = ("task", "preset", "data", "text_column", "seq_len", "max_steps", "batch_size", "learning_rate",
          "vocab_size", "scale_embeddings", "report_to")


@dataclass
class CompareOptions:
    """What to compare. `None` means the study's value (`STUDIES`: the default one, or the quick one), else the
    training preset's."""

    output_dir: str | None = None
    task: str = TrainingOptions.task  # lm: perplexity; or a synthetic task (data/tasks), scored by exact match
    positions: list[str] | None = None
    factors: list[int] | tuple[int, ...] = (1, 2, 4, 8)  # evaluation lengths as multiples of seq_len
    seeds: list[int] | tuple[int, ...] = (0,)
    eval_tokens: int | None = None  # validation tokens scored at every length
    quick: bool = False
    overwrite: bool = False
    random_positions: int | None = None  # also train each scheme that reads positions on randomized ones (Ruoss et al.)
    jobs: int = 1  # runs at once on this machine, each in its own process (executors.LocalProcesses)
    slurm: SlurmOptions | None = None  # each run a Slurm job, all in one job array (study/slurm.py)
    wait: bool = True  # wait for the runs and gather; False: submit them and return (the same call gathers later)
    # Passed to every training run; left out, each is the training run's default (TrainingOptions):
    preset: str = TrainingOptions.preset
    data: list[str] | None = None
    text_column: str = TrainingOptions.text_column
    seq_len: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    vocab_size: int | None = None
    scale_embeddings: bool = TrainingOptions.scale_embeddings
    report_to: list[str] | tuple[str, ...] = TrainingOptions.report_to

    def __post_init__(self):
        arguments.check_fields(self, FIELD_CHECKS)

    @property
    def lengths(self) -> list[int]:
        """The evaluation lengths: L times each factor (once resolved)."""
        return [self.seq_len * factor for factor in self.factors]


# What each option accepts, checked when the options are made (arguments.check_fields): the study's own, and those
# passed to every run as training checks them.
FIELD_CHECKS = {
    "output_dir": optional(arguments.path),
    "task": arguments.text,
    "positions": optional(one_or_more(arguments.text)),  # one scheme alone is one scheme
    "factors": one_or_more(arguments.integer),
    "seeds": one_or_more(arguments.seed),
    "eval_tokens": optional(arguments.integer),
    "quick": arguments.flag,
    "overwrite": arguments.flag,
    "random_positions": optional(arguments.integer),
    "jobs": arguments.integer,
    "slurm": optional(arguments.instance(SlurmOptions)),
    "wait": arguments.flag,
    **{name: TRAINING_FIELD_CHECKS[name] for name in SHARED},
}


def resolve_study(options: CompareOptions) -> CompareOptions:
    """`options` with the study's values and the preset's filled in, paths resolved, and everything checked that
    can be before any work (each scheme's runs too: learned positions take --seq-len within their table)."""
    study = BUDGETS.get(options.task, TASK_STUDIES)["quick" if options.quick else "default"]
    options = dataclasses.replace(
        options, factors=sorted(set(options.factors)), seeds=list(dict.fromkeys(options.seeds)),
        **{name: value for name, value in study.items() if name != "output_dir" and getattr(options, name) is None})
    options = dataclasses.replace(options, positions=list(dict.fromkeys(options.positions)))
    # The preset's values for what neither the options nor the study set, and their checks (an unknown task too).
    run = complete(resolve_paths(TrainingOptions(**{name: getattr(options, name) for name in SHARED})))
    output_dir = study["output_dir"].format(task=options.task) if options.output_dir is None else options.output_dir
    options = dataclasses.replace(options, output_dir=resolve_path(output_dir, "--output-dir"),
                                  **{name: getattr(run, name) for name in SHARED})
    unknown = [name for name in options.positions if name not in POSITION_EMBEDDING_TYPES]
    if unknown:
        raise ValueError(f"unknown position scheme {', '.join(unknown)}: choose from "
                         f"{', '.join(POSITION_EMBEDDING_TYPES)}.")
    if not options.seeds:
        raise ValueError(f"{option('seeds')}: give at least one seed, e.g. 0 or 0,1,2.")
    if not options.factors or min(options.factors) < 1:
        raise ValueError(f"{option('factors', options.factors)}: evaluation lengths are multiples of "
                         f"{option('seq_len')}, 1 or more.")
    for position in options.positions:  # what each scheme's runs take (learned: --seq-len within its table)
        run = complete(TrainingOptions(position=position, **{name: getattr(options, name) for name in SHARED}))
        check_randomized_twin(options, run)
    if options.random_positions is not None and not any(POSITION_SCHEMES[position].contributes()
                                                        for position in options.positions):
        raise ValueError(f"{option('random_positions')}: {', '.join(options.positions)} read no position, so random "
                         f"ones would change nothing. Add a scheme that reads positions, or drop "
                         f"{option('random_positions')}.")
    check_executor(options)
    return options


def check_executor(options: CompareOptions) -> None:
    """Where the runs run: one of this process, --jobs N processes, or Slurm, checked before anything is submitted
    (the study folder on a shared file system, the partition, the cluster's commands)."""
    if options.slurm is not None and options.jobs > 1:
        raise ValueError(f"{option('jobs')} runs the study on this machine and {option('slurm')} on a cluster: choose "
                         f"one.")
    if not options.wait and options.slurm is None:
        raise ValueError(f"{option('wait', False)} submits the runs to Slurm and returns: it needs {option('slurm')} "
                         f"(on this machine the runs are this command's processes, which end with it).")
    if options.slurm is not None:
        check_slurm(options.output_dir, options.slurm)


def check_randomized_twin(options: CompareOptions, run: TrainingOptions) -> None:
    """The run of `run`'s scheme on random positions, when the study has one (`--random-positions`, a scheme that
    reads positions): checked as training checks it (`training.options.check_random_positions`), its positions
    reaching the longest length the study evaluates at."""
    if options.random_positions is None or not POSITION_SCHEMES[run.position].contributes():
        return
    twin = dataclasses.replace(run, random_positions=options.random_positions)
    longest = max(options.lengths)
    check_random_positions(twin, position_limit(twin),
                           evaluated=(longest, f"--seq-len {options.seq_len} x --factors {max(options.factors)}"))
