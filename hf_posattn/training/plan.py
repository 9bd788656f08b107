"""The one pass from a user's `TrainingOptions` to the plan of the run (`TrainingPlan`), before any work: paths resolved,
the run file read (on resume), the model of `--init-from` and the tokenizer to reuse read, every default filled in
and every value checked (`options.complete`), the data read, and where the run writes decided. Each file is read
once, in the order a user fixes them: the options, the data, the tokenizer, the model of --init-from (its weights
too), then the output folder (on resume the folder comes first: it holds the options; then its checkpoints).

It only reads: every process of a distributed run plans the same. The phases of `run.py` take the plan and never
come back here.
"""

from dataclasses import dataclass

from ..common import option
from ..data.tasks import LANGUAGE_MODELLING, made_for, made_for_text
from ..data.tokenizers import has_tokenizer
from ..model.configuration_posattn import PosAttnConfig
from ..model.modeling_posattn import PosAttnForCausalLM
from ..runfolder import RunPlan, plan_run, read_run_record, resume_checkpoint
from ..sharing.loading import (
    check_json_files,
    load_model_config,
    load_tokenizer,
    load_weights,
    read_tokenizer,
)
from .data import TaskData, TextData, training_data
from .options import (
    TrainingOptions,
    complete,
    max_length,
    output_dir,
    resolve_paths,
    resumed,
)


@dataclass(frozen=True)
class TrainingPlan:
    """What the run does, decided before any work: the options resolved (what the run file records), where it
    writes, its text, the longest input its scheme takes (None: any), the tokenizer it reuses (of --tokenizer,
    --init-from or the run it resumes; None: it trains one), the model it starts from (of --init-from) and, on
    resume, the checkpoint it continues from."""

    options: TrainingOptions
    folder: RunPlan
    data: TextData | TaskData  # what it trains on: text, or a synthetic task
    max_length: int | None = None
    tokenizer: object = None
    initial_model: PosAttnForCausalLM | None = None
    checkpoint: str | None = None


def plan_training(options: TrainingOptions) -> TrainingPlan:
    """The plan of the run that `options` ask for (see the module docstring); a ValueError with the fix for any
    input that is wrong, before anything is written."""
    options = resolve_paths(options)
    folder = run = None
    if options.resume:
        folder = plan_run(output_dir(options), resume=True)
        run = read_run_record(folder.work_dir)
        options = resumed(options, run["options"], folder.target)
    model = None if options.init_from is None else load_model_config(options.init_from, options.rope_parameters)
    tokenizer = reused_tokenizer(options, model, folder)
    options = complete(options, model, None if tokenizer is None else len(tokenizer))
    checkpoint = resume_point(options, run["results"], folder) if options.resume else None
    data = training_data(options)
    if options.tokenizer and tokenizer is None:
        raise ValueError(f"{option('tokenizer', options.tokenizer)}: no tokenizer.json there; give a folder that "
                         f"holds a tokenizer (e.g. another run's {option('output_dir')}).")
    initial = None
    if model is not None:  # a damaged --init-from is refused before the run folder is touched
        initial = load_weights(options.init_from, model)
    if folder is None:
        folder = plan_run(options.output_dir, overwrite=options.overwrite)
    return TrainingPlan(options, folder, data, max_length(options, model), tokenizer, initial, checkpoint)


def reused_tokenizer(options: TrainingOptions, model: PosAttnConfig | None, folder: RunPlan | None):
    """The tokenizer the run reuses, read and checked once: the one of --init-from (no more tokens than its model
    has), else of --tokenizer (a folder without one yet is refused later, after the data), else the one the run being
    resumed saved (it keeps its tokens); None when the run trains one. A damaged file is named; a tokenizer without
    an end-of-text token, which training puts between documents and generation stops at, is refused, and so is one
    made for other work than the run's task (`check_made_for`)."""
    if model is not None:
        check_json_files(options.init_from)
        tokenizer, source = load_tokenizer(options.init_from, model.vocab_size), "init_from"
        given = option(source, options.init_from)
    elif options.tokenizer is not None and has_tokenizer(options.tokenizer):
        tokenizer, source = read_tokenizer(options.tokenizer), "tokenizer"
        given = option(source, options.tokenizer)
    elif options.tokenizer is None and folder is not None and has_tokenizer(folder.work_dir):
        tokenizer, source = read_tokenizer(folder.work_dir), "resume"
        given = f"{option(source, True)} {folder.work_dir}"
    else:
        return None
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{given}: its tokenizer has no end-of-text token (eos_token), which training puts between "
                         f"documents and generation stops at. Give a tokenizer that has one (e.g. another run's "
                         f"folder), or leave {option(source)} out to train one.")
    check_made_for(tokenizer, options.task, source, given)
    return tokenizer


def check_made_for(tokenizer, task: str, source: str, given: str) -> None:
    """Refuse a tokenizer (of --tokenizer, or of the model of --init-from: `source`) made for other work than the
    run's `task` (`made_for`), with what to give instead: a model trained on text would read a task's examples as
    <unk> tokens, and a task's model would read text so."""
    tasks = made_for(tokenizer)
    if task in tasks:
        return
    what = "holds a model of" if source == "init_from" else "is the tokenizer of"
    if task == LANGUAGE_MODELLING:  # a task's tokenizer, for text
        instead = (f"Train {made_for_text(tasks)} with {option('task', tasks[0])}, or leave {option(source)} out "
                   f"to train on text")
    elif source == "init_from":
        instead = (f"Start the {task} task from scratch without {option(source)}, or from a run of that task" +
                   (f"; or train {made_for_text(tasks)} with {option('task', tasks[0])}"
                    if tasks != (LANGUAGE_MODELLING,) else ""))
    else:
        instead = f"Leave {option(source)} out: the {task} task brings its own words"
    raise ValueError(f"{given} {what} {made_for_text(tasks)}, but this run trains on {made_for_text((task,))}, "
                     f"whose words it does not know. {instead}.")


def resume_point(options: TrainingOptions, results: dict | None, folder: RunPlan) -> str | None:
    """The checkpoint a resumed run continues from (`folder.resume_checkpoint`; None: from step 0); refuses a
    finished run: its checkpoints went when it finished (one finished before they did trains longer from them, with
    a larger max_steps)."""
    checkpoint = resume_checkpoint(folder.work_dir)
    if results is None:
        return checkpoint
    steps = results.get("steps")
    if checkpoint is None:
        raise ValueError(f"{folder.target} holds a finished run ({steps} steps), and a finished run keeps no "
                         f"checkpoints: there is nothing to resume. To train its model further, start a new run from "
                         f"it: {option('init_from', folder.target)}, with another {option('output_dir')}.")
    if not isinstance(steps, int) or options.max_steps <= steps:
        larger = 2 * steps if isinstance(steps, int) else "N"
        raise ValueError(f"{folder.target} holds a finished run ({steps} steps): there is nothing to resume. To "
                         f"train it longer, give {option('resume', True)} a larger {option('max_steps')} (e.g. "
                         f"{option('max_steps', larger)}).")
    return checkpoint
