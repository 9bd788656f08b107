"""A study as a plan of runs: every run (scheme, seed, randomized twin) described as data before anything runs, and
what each run does when it runs: train (or continue training), then evaluate everything the study measures of its
model and record that evaluation in the run's own folder, whole.

A `StudyRun` is a picklable callable: calling it in this process, in a worker process or in a Slurm job does the
same, and returns the run's record. It decides at call time whether to train, continue or only evaluate, from what
its folder holds then, so that a job requeued after a preemption continues from its last checkpoint.

A run is *done* when its folder holds its evaluation (`EVALUATION_FILE`) for what this study measures: the plan leaves
it out, and the gather reads the record. The paths that a study's runs record beside themselves (the shared
tokenizer) are read where the study is now, so that a study folder moved or copied elsewhere continues there.
"""

import dataclasses
import json
import os
import time
from dataclasses import dataclass

from ..common import notice, option
from ..data.tasks import training_recipe
from ..data.tasks.common import EVERY_TOKEN
from ..files import write_json
from ..model.positional import POSITION_SCHEMES
from ..runfolder import (
    EVALUATION_FILE,
    holds_whole_model,
    is_free,
    is_run,
    plan_run,
    read_json_record,
    read_run_record,
    staging_dir,
)
from ..training.options import RUN_IDENTITY, TrainingOptions, moved_with_the_run
from .folder import study_path, tokenizer_dir
from .options import EXTENSIONS, SHARED, CompareOptions


@dataclass(frozen=True)
class StudyRun:
    """One run of a study: its training options (the study's, with its scheme, seed and positions), what the study
    measures of its model (`kind`, `material`, `lengths`, `extension_factor`: every context extension of a
    rotary-type model is evaluated at that factor), and `measures`, the record of what was measured, which a done
    run's evaluation must match."""

    position: str
    seed: int
    random_positions: int | None
    options: TrainingOptions
    kind: object  # the study's kind (study.kind.StudyKind)
    material: object
    lengths: tuple[int, ...]
    extension_factor: int
    measures: dict

    @property
    def name(self) -> str:
        return os.path.basename(self.options.output_dir)

    @property
    def label(self) -> str:
        twin = "" if self.random_positions is None else " (random positions)"
        return f"{self.position}{twin}, seed {self.seed}"

    def __call__(self) -> dict:
        """Train (or continue), evaluate, write the evaluation into the run's folder and return it."""
        action = next_step(self)
        if action in ("train", "resume", "retrain"):
            from ..training.run import train

            if action == "retrain":
                notice(f"{self.options.output_dir}: its model is not whole (a file was deleted or damaged) and it has "
                       f"no evaluation, so it is trained again")
            train(dataclasses.replace(self.options, resume=action == "resume", overwrite=action == "retrain"
                                      or self.options.overwrite))
        start = time.perf_counter()
        results = read_run_record(self.options.output_dir)["results"]
        record = {"position": self.position, "seed": self.seed, "random_positions": self.random_positions,
                  "run": self.name, "parameters": results["parameters"], "train_seconds": results["train_seconds"],
                  "wall_seconds": results["wall_seconds"], "loss": trained_loss(results), "measures": self.measures,
                  **evaluate(self)}
        record["evaluation_seconds"] = time.perf_counter() - start
        write_json(os.path.join(self.options.output_dir, EVALUATION_FILE), record)
        return record


def evaluate(run: StudyRun) -> dict:
    """What the study measures of the run's model: `kind.evaluate` at every length, what the kind measures of the run
    itself, and `kind.evaluate` again for each context extension of a rotary-type model."""
    from ..sharing.loading import load_model

    model, tokenizer = load_model(run.options.output_dir)
    evaluation = {"results": run.kind.evaluate(model, tokenizer, run.material, list(run.lengths))}
    evaluation.update(run.kind.evaluate_run(model, tokenizer, run.options, run.material, list(run.lengths)))
    del model
    if has_extensions(run.position, run.extension_factor):
        evaluation["extensions"] = {}
        for rope_type in EXTENSIONS:
            extended = extended_model(run.options.output_dir, rope_type, run.extension_factor)
            evaluation["extensions"][rope_type] = run.kind.evaluate(extended, tokenizer, run.material,
                                                                    list(run.lengths))
            del extended
    return evaluation


def extended_model(folder: str, rope_type: str, factor: float):
    """The trained model in `folder` with its rotary frequencies stretched by `factor` (`rope_type` of
    `EXTENSIONS`) from the length it was trained at: the same weights, other `rope_parameters`."""
    from ..sharing.loading import load_model

    model, _ = load_model(folder, rope_parameters={"rope_type": rope_type, "factor": float(factor)})
    return model


def has_extensions(position: str, factor: int) -> bool:
    """Rotary-type schemes get one row per context extension (`EXTENSIONS`), applied at the study's longest factor."""
    return "rope_parameters" in POSITION_SCHEMES[position].config_fields and factor > 1


# ---- the plan ----

def run_options(options: CompareOptions, position: str, seed: int, vocab_size: int,
                random_positions: int | None) -> TrainingOptions:
    """The same run for every scheme but its position scheme and seed (and, for its randomized twin, the positions
    it reads), on the study's tokenizer (of `vocab_size` tokens, as the run records it). A checkpoint every
    `kind`-sized interval (`save_steps`), so that an interrupted or preempted run loses little."""
    shared = {name: getattr(options, name) for name in SHARED if name != "vocab_size"}
    name = f"{position}-seed{seed}" if random_positions is None else f"{position}-random{random_positions}-seed{seed}"
    return TrainingOptions(
        output_dir=study_path(options.output_dir, name), position=position, seed=seed,
        tokenizer=tokenizer_dir(options.output_dir), vocab_size=vocab_size, eval_steps=options.max_steps,
        save_steps=max(1, options.max_steps // CHECKPOINTS), quiet=True, overwrite=options.overwrite,
        random_positions=random_positions, **shared)


CHECKPOINTS = 5  # per study run: a run stopped (Ctrl-C, a Slurm time limit, preemption) loses at most a fifth


def plan_runs(options: CompareOptions, kind, material, vocab_size: int) -> list[StudyRun]:
    """Every run of the study: each scheme and seed, and with --random-positions its twin on randomized positions
    (for every scheme that reads positions), in that order."""
    lengths = tuple(options.lengths)
    factor = max(options.factors)
    # As the evaluation file will hold it (JSON: keys are text), so that a done run's record compares equal.
    measures = json.loads(json.dumps({"lengths": list(lengths), "extension_factor": factor,
                                      **kind.measures(options, material)}))
    runs = []
    for position in options.positions:
        variants = [None]
        if options.random_positions is not None and POSITION_SCHEMES[position].contributes():
            variants.append(options.random_positions)
        for randomized in variants:
            # A twin is measured as a twin (its kind may score it on positions drawn as in its training): a twin
            # evaluated before that is evaluated again, a plain run's evaluation stays.
            measured = measures if randomized is None else {**measures, "random_positions": randomized}
            for seed in options.seeds:
                runs.append(StudyRun(position, seed, randomized,
                                     run_options(options, position, seed, vocab_size, randomized), kind, material,
                                     lengths, factor, measured))
    return runs


def next_step(run: StudyRun) -> str:
    """What `run` does now, from what its folder holds (every refusal is made here, and the study asks before any
    work): "done" (its evaluation of these measures is there), "evaluate" (finished training, not evaluated for these
    measures), "resume" (unfinished training, or an unfinished replacement with --overwrite), "train" (a free
    folder, or --overwrite), "retrain" (a finished run of this study whose model is gone, with no evaluation to
    read)."""
    folder = run.options.output_dir
    plan_run(folder, overwrite=True)  # a folder with files that are not a run is refused, even then
    if run.options.overwrite:
        return "resume" if is_run(staging_dir(folder)) else "train"
    if is_free(folder):
        return "train"
    recorded = read_run_record(folder)
    if recorded is None:
        raise ValueError(f"{folder} holds a model that is not one of the study's runs: move it away, or pass "
                         f"{option('overwrite', True)} to replace it.")
    check_same_run(run.options, recorded["options"])
    if recorded["results"] is None:
        return "resume"
    check_same_loss(run.options, recorded["results"])
    evaluation = read_json_record(os.path.join(folder, EVALUATION_FILE))
    if evaluation is not None and evaluation.get("measures") == run.measures:
        return "done"
    return "evaluate" if holds_whole_model(folder) else "retrain"


def check_same_run(run: TrainingOptions, started: dict) -> None:
    """A run of the study's folder must be the one these options make; the paths it recorded beside itself (the
    study's tokenizer) are read where the study is now (`moved_with_the_run`)."""
    started = moved_with_the_run(started, run.output_dir)
    changed = [name for name in (*RUN_IDENTITY, "max_steps") if started.get(name) != getattr(run, name)]
    if changed:
        was = ", ".join(f"{name}={started.get(name)!r} (now {getattr(run, name)!r})" for name in changed)
        raise ValueError(f"{run.output_dir} holds a run of this study made with other options: {was}. Pass "
                         f"{option('overwrite', True)} to train the study's runs again, or choose another "
                         f"{option('output_dir')}.")


def trained_loss(results: dict) -> str:
    """What the finished run's loss read, as its results record it: every token for a run recorded before tasks
    declared their loss (every run then read every token)."""
    return results.get("loss", EVERY_TOKEN)


def check_same_loss(run: TrainingOptions, results: dict) -> None:
    """A finished run whose loss read otherwise than its task's does now (a study made before the task changed its
    recipe) is not one of this study's runs: its scores would be put under the wrong caption."""
    now = training_recipe(run.task)["loss"]
    if trained_loss(results) != now:
        raise ValueError(f"{run.output_dir} was trained with the loss on {trained_loss(results)}, and the {run.task} "
                         f"task now trains with the loss on {now}: pass {option('overwrite', True)} to train the "
                         f"study's runs again, or choose another {option('output_dir')}.")
