"""`posattn compare`: train short, test long. How well does each position scheme work past the length it was trained
at?

One model per position scheme (and per seed), each with the same preset, data, tokenizer, steps, batch, learning
rate and seed, trained at length `L` with `train`; then each is scored at `L`, `2L`, `4L`, `8L` (as Press et al.
2022 evaluate), and the study writes its tables and figures in its folder.

    from hf_posattn.study.run import CompareOptions, compare
    study = compare(CompareOptions(quick=True))
    print(study["table"])

The study's folder is owned like a run folder; finished runs with the same options are reused, interrupted ones
resumed, and a run made with other options is never replaced without --overwrite.
"""

import dataclasses
import os
import time

from ..common import hardware, notice
from ..data.tasks import LANGUAGE_MODELLING
from ..data.tokenizers import has_tokenizer
from .. import arguments
from ..files import WriteFailed, resolve_path, saved_whole, write_json
from ..model.positional import POSITION_SCHEMES
from ..training.folder import STUDY_FILE, is_free, locked, plan_run, plan_study, read_run_record, remove_checkpoints
from ..training.options import RUN_IDENTITY, TrainingOptions, resolve_paths
from ..training.outcomes import TrainingInterrupted, TrainingWriteFailed
from ..training.run import train
from .lm import (
    EXTENSIONS,
    TOKENIZER_DIR,
    TOKENIZER_SOURCE,
    LanguageModelStudy,
    extended_model,
    recorded_tokenizer_source,
)
from .options import SHARED, CompareOptions, resolve_study
from .summary import summarize
from .tables import write_outputs
from .tasks import TaskStudy


class StudyInterrupted(TrainingInterrupted):
    """Ctrl-C stopped the study: what it finished stays, and the same command continues it."""

    def __init__(self, output_dir: str, command: str | None):
        self.output_dir, self.checkpoint = output_dir, None
        again = f"run the same command again: {command}" if command else "call compare() again with the same options"
        Exception.__init__(self, f"study interrupted: its finished runs stay, and a run stopped in training keeps its "
                                 f"last checkpoint. To continue the study in {output_dir}, {again} (finished runs are "
                                 f"reused, the stopped one continues where it was).")


def training_options(options: CompareOptions, position: str, seed: int, vocab_size: int,
                     random_positions: int | None = None) -> TrainingOptions:
    """The same run for every scheme but its position scheme and seed (and, for its randomized twin, the positions
    it reads), on the study's tokenizer (of `vocab_size` tokens, as the run records it), every option that makes the
    run what it is given (the study's, resolved), so that they compare with what a finished run recorded; `train`
    plans the rest. One evaluation and one checkpoint, at the end: the study evaluates at every length itself."""
    shared = {name: getattr(options, name) for name in SHARED if name != "vocab_size"}
    name = f"{position}-seed{seed}" if random_positions is None else f"{position}-random{random_positions}-seed{seed}"
    return TrainingOptions(
        output_dir=resolve_path(os.path.join(options.output_dir, name), "--output-dir"),
        position=position, seed=seed, tokenizer=resolve_path(os.path.join(options.output_dir, TOKENIZER_DIR),
                                                             "--tokenizer"),
        vocab_size=vocab_size, eval_steps=options.max_steps, quiet=True, overwrite=options.overwrite,
        random_positions=random_positions, **shared,
    )


def study_runs(options: CompareOptions, vocab_size: int) -> dict[tuple, TrainingOptions]:
    """Every run of the study, by (scheme, seed, random positions or None): each scheme and seed, and with
    --random-positions its twin on randomized positions (for every scheme that reads positions)."""
    runs = {}
    for position in options.positions:
        variants = [None]
        if options.random_positions is not None and POSITION_SCHEMES[position].contributes():
            variants.append(options.random_positions)
        for randomized in variants:
            for seed in options.seeds:
                runs[position, seed, randomized] = training_options(options, position, seed, vocab_size, randomized)
    return runs


def study_of(options: CompareOptions):
    """What the study measures: language modelling, or a synthetic task."""
    return LanguageModelStudy() if options.task == LANGUAGE_MODELLING else TaskStudy(options.task)


def check_study_tokenizer(options: CompareOptions, study) -> None:
    """The study's shared tokenizer, if its folder has one, must be the one these options make: a tokenizer the study
    did not make is not used, and one made for other data or another task means runs that are not these."""
    folder = os.path.join(options.output_dir, TOKENIZER_DIR)
    if options.overwrite or not has_tokenizer(folder):
        return
    recorded = recorded_tokenizer_source(folder)
    if recorded is None:
        raise ValueError(f"{folder} holds a tokenizer that this study did not make (it has no {TOKENIZER_SOURCE}): it "
                         f"is not used. Move it away, pass --overwrite to train the study's own, or choose another "
                         f"--output-dir.")
    if recorded != study.tokenizer_source(options):
        raise ValueError(f"{options.output_dir} holds a study made with other data or vocabulary, or of another "
                         f"task ({recorded}), whose runs share its tokenizer. Give the same --task, --data, "
                         f"--text-column and --vocab-size, --overwrite to start the study again, or another "
                         f"--output-dir.")


def evaluate_run(study, run: TrainingOptions, tokenizer, material, options: "CompareOptions") -> dict:
    """Everything the study measures on one finished run: `study.evaluate` at every length, what `study` measures of
    the run itself, and `study.evaluate` again for each context extension of a rotary-type model."""
    from ..sharing.loading import load_model

    model, _ = load_model(run.output_dir)
    evaluation = {"results": study.evaluate(model, tokenizer, material, options)}
    evaluation.update(study.evaluate_run(model, run, material))
    del model
    factor = max(options.factors)
    if "rope_parameters" in POSITION_SCHEMES[run.position].config_fields and factor > 1:
        evaluation["extensions"] = {}
        for rope_type in EXTENSIONS:
            extended = extended_model(run.output_dir, rope_type, factor)
            evaluation["extensions"][rope_type] = study.evaluate(extended, tokenizer, material, options)
            del extended
    return evaluation


def what_to_do(run: TrainingOptions) -> tuple[str, dict | None]:
    """What the study does with `run`, decided before any training: ("reuse", results) for a finished run with the
    same options; ("resume", None) for an interrupted one (it continues where it stopped, or starts again); ("train",
    None) for a free folder, or any run with --overwrite (replaced only once the new one has finished). A run with
    other options is refused without --overwrite: the study never replaces a run it was not told to."""
    plan_run(run.output_dir, overwrite=True)  # a folder with files that are not a run is refused, even then
    if is_free(run.output_dir) or run.overwrite:
        return "train", None
    recorded = read_run_record(run.output_dir)
    if recorded is None:
        raise ValueError(f"{run.output_dir} holds a model that is not one of the study's runs: move it away, or "
                         f"pass --overwrite to replace it.")
    started = recorded["options"]
    # Paths recorded before runs recorded them resolved (relative ones) read as they were read then: from here.
    fields = {name: started[name] for name in ("data", "tokenizer", "init_from") if started.get(name) is not None}
    started = {**started, **{name: getattr(resolve_paths(TrainingOptions(**fields)), name) for name in fields}}
    changed = [name for name in (*RUN_IDENTITY, "max_steps") if started.get(name) != getattr(run, name)]
    if changed:
        was = ", ".join(f"{name}={started.get(name)!r} (now {getattr(run, name)!r})" for name in changed)
        raise ValueError(f"{run.output_dir} holds a run of this study made with other options: {was}. Pass "
                         f"--overwrite to train the study's runs again, or choose another --output-dir.")
    return ("reuse", recorded["results"]) if recorded["results"] is not None else ("resume", None)


@arguments.checked(options=arguments.instance(CompareOptions), command=arguments.optional(arguments.text))
def compare(options: CompareOptions, command: str | None = None) -> dict:
    """Train and evaluate every scheme and seed, write `compare.csv`, `compare.json` and `compare.png` in the
    study's folder and return the study (the JSON's content). Bad input raises `ValueError` before any training."""
    from ..figures.common import pyplot

    pyplot()  # without matplotlib, fail now rather than after training every model
    options = resolve_study(options)
    plan_study(options.output_dir)  # a free folder, or a study's: never a folder of other files
    with locked(options.output_dir):  # one study at a time in a folder
        plan_study(options.output_dir)  # again, under the lock: another process may have written since
        try:
            return run_study(options, command)
        except (TrainingInterrupted, KeyboardInterrupt):  # Ctrl-C: the study, not one run, is what continues
            raise StudyInterrupted(options.output_dir, command) from None
        except TrainingWriteFailed as stopped:
            again = f"run the same command again: {command}" if command else "call compare() again"
            raise WriteFailed(f"{stopped.failure}. The study stopped there; what it finished stays. Free some space, "
                              f"then {again}.") from stopped


def run_study(options: CompareOptions, command: str | None) -> dict:
    """The study in `options.output_dir`, claimed by `compare`: every input checked (the tokenizer, every run),
    then the study file written, then the tokenizer, the runs, the tables and figures."""
    start = time.perf_counter()
    study = study_of(options)
    check_study_tokenizer(options, study)
    tokenizer, material = study.prepare(options)
    tokenizer_dir = os.path.join(options.output_dir, TOKENIZER_DIR)
    runs = study_runs(options, len(tokenizer))
    actions = {key: what_to_do(run) for key, run in runs.items()}  # every run is checked before any is trained
    write_json(os.path.join(options.output_dir, STUDY_FILE), {"command": command,
                                                              "settings": dataclasses.asdict(options)})
    os.makedirs(tokenizer_dir, exist_ok=True)
    with saved_whole(tokenizer_dir) as temporary:  # the tokenizer with the record of what it was made for
        tokenizer.save_pretrained(temporary)
        write_json(os.path.join(temporary, TOKENIZER_SOURCE), study.tokenizer_source(options))
    lengths = options.lengths
    notice(f"comparing {', '.join(options.positions)} (seeds {', '.join(map(str, options.seeds))}"
           f"{'' if options.random_positions is None else f'; and on random positions from [0, {options.random_positions})'}"
           f"): trained at L = {options.seq_len} tokens for {options.max_steps} steps of {options.batch_size} "
           f"blocks, evaluated at {', '.join(map(str, lengths))}: {study.describe(options, material)}")

    records = []
    for number, ((position, seed, randomized), run) in enumerate(runs.items(), 1):
        label = f"[{number}/{len(runs)}] {position}{'' if randomized is None else ' (random positions)'}, seed {seed}"
        action, results = actions[position, seed, randomized]
        if action == "reuse":
            notice(f"{label}: reusing the finished run in {run.output_dir}")
        else:
            notice(f"{label}: training ...")
            results = train(dataclasses.replace(run, resume=action == "resume")).to_dict()
            remove_checkpoints(run.output_dir)  # optimizer state for --resume; the study keeps only the final model
        evaluation_start = time.perf_counter()
        record = {"position": position, "seed": seed, "random_positions": randomized, "output_dir": run.output_dir,
                  "parameters": results["parameters"], "train_seconds": results["train_seconds"],
                  "wall_seconds": results["wall_seconds"], **evaluate_run(study, run, tokenizer, material, options)}
        record["evaluation_seconds"] = time.perf_counter() - evaluation_start
        records.append(record)
        notice(f"{label}: {study.result_line(record['results'])} ({results['train_seconds'] / 60:.1f} min of "
               f"training)")

    report = {
        "command": command,
        "settings": {**dataclasses.asdict(options), "lengths": lengths, "tokenizer": tokenizer_dir},
        "hardware": hardware(),
        **study.study_fields(material),
        "wall_seconds": time.perf_counter() - start,
        "train_seconds": sum(record["train_seconds"] for record in records),  # of every run, reused ones too
        "table": summarize(records, options.positions, lengths, study),
        "runs": records,
    }
    if "eval_tokens" in report:  # the language model's: the tokens actually scored
        report["settings"]["eval_tokens"] = report.pop("eval_tokens")
    write_outputs(report, options.output_dir)
    study.write_figures(report, material, options.output_dir)
    return report
