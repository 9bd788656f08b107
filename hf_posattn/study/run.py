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
from dataclasses import dataclass

from ..common import hardware, notice
from ..files import WriteFailed, resolve_path, saved_whole, write_json
from ..model import positional
from ..model.positional import POSITION_EMBEDDING_TYPES, POSITION_SCHEMES
from ..training.folder import STUDY_FILE, is_free, locked, plan_run, plan_study, read_run_record, remove_checkpoints
from ..training.options import RUN_IDENTITY, TrainingOptions, resolve, resolve_paths
from ..training.run import TrainingInterrupted, TrainingWriteFailed, train
from .lm import TOKENIZER_DIR, TOKENIZER_SOURCE, evaluate_run, study_tokens, tokenizer_source
from .summary import summarize
from .tables import write_outputs

# The schemes a study trains unless --positions says otherwise. The default study trains every built-in scheme, in
# the registry's order, read from the registry so that a scheme added to positional.py joins it (a scheme registered
# at run time is selected with --positions: it would change the study's time); --quick the five that Press et al.
# (2022) and the first studies compared.
DEFAULT_POSITIONS = tuple(name for name, scheme in POSITION_SCHEMES.items() if scheme.__module__ == positional.__name__)


QUICK_POSITIONS = ("sinusoidal", "learned", "rotary", "alibi", "none")


# The two budgets, sized to fit on 2 CPU cores with one seed, measured on a quiet Intel Xeon: `default` (nine
# schemes, and the extension rows of rotary and xPos) 21.2 minutes, about 2 per run (1.7 of them training);
# `quick` (five schemes, rotary's extension rows) 3.5 minutes. Each further seed costs as much again. Options
# given explicitly win.
STUDIES = {
    "default": {"positions": DEFAULT_POSITIONS, "seq_len": 128, "max_steps": 300, "batch_size": 16,
                "eval_tokens": 65536, "output_dir": os.path.join("runs", "compare")},
    "quick": {"positions": QUICK_POSITIONS, "seq_len": 64, "max_steps": 150, "batch_size": 16, "eval_tokens": 16384,
              "output_dir": os.path.join("runs", "compare-quick")},
}


# What every training run of a study shares.
SHARED = ("preset", "data", "text_column", "seq_len", "max_steps", "batch_size", "learning_rate", "vocab_size",
          "scale_embeddings", "report_to")


@dataclass
class CompareOptions:
    """What to compare. `None` means the study's value (`STUDIES`), else the training preset's."""

    output_dir: str | None = None
    positions: list[str] | None = None  # DEFAULT_POSITIONS; --quick QUICK_POSITIONS
    factors: list[int] | None = None  # evaluation lengths as multiples of seq_len: 1, 2, 4, 8
    seeds: list[int] | None = None  # [0]
    eval_tokens: int | None = None  # validation tokens scored at every length (the study's: 65,536; --quick 16,384)
    quick: bool = False
    overwrite: bool = False
    # Passed to every training run:
    preset: str | None = None
    data: list[str] | None = None
    text_column: str | None = None
    seq_len: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    vocab_size: int | None = None
    scale_embeddings: bool | None = None
    report_to: list[str] | None = None

    @property
    def lengths(self) -> list[int]:
        """The evaluation lengths: L times each factor (once resolved)."""
        return [self.seq_len * factor for factor in self.factors]


class StudyInterrupted(TrainingInterrupted):
    """Ctrl-C stopped the study: what it finished stays, and the same command continues it."""

    def __init__(self, output_dir: str, command: str | None):
        self.output_dir, self.checkpoint = output_dir, None
        again = f"run the same command again: {command}" if command else "call compare() again with the same options"
        Exception.__init__(self, f"study interrupted: its finished runs stay, and a run stopped in training keeps its "
                                 f"last checkpoint. To continue the study in {output_dir}, {again} (finished runs are "
                                 f"reused, the stopped one continues where it was).")


def resolve_study(options: CompareOptions) -> CompareOptions:
    study = STUDIES["quick" if options.quick else "default"]
    options = dataclasses.replace(options, output_dir=resolve_path(
        study["output_dir"] if options.output_dir is None else options.output_dir, "--output-dir"))
    options = dataclasses.replace(
        options,
        factors=sorted(set(options.factors or (1, 2, 4, 8))),
        seeds=list(dict.fromkeys(options.seeds if options.seeds is not None else [0])),
        **{name: value if getattr(options, name) is None else getattr(options, name)
           for name, value in study.items()},
    )
    options = dataclasses.replace(options, positions=list(dict.fromkeys(options.positions)))
    # The preset's values for what neither the options nor the study set (and their checks).
    run = resolve(TrainingOptions(**{name: getattr(options, name) for name in SHARED}))
    options = dataclasses.replace(options, **{name: getattr(run, name) for name in SHARED})
    unknown = [name for name in options.positions if name not in POSITION_EMBEDDING_TYPES]
    if unknown:
        raise ValueError(f"unknown position scheme {', '.join(unknown)}: choose from "
                         f"{', '.join(POSITION_EMBEDDING_TYPES)}.")
    if not options.seeds:
        raise ValueError("--seeds: give at least one seed, e.g. 0 or 0,1,2.")
    if min(options.factors) < 1:
        raise ValueError(f"--factors {options.factors}: evaluation lengths are multiples of --seq-len, 1 or more.")
    for position in options.positions:  # what each scheme's runs take (learned: --seq-len within its table)
        resolve(TrainingOptions(position=position, **{name: getattr(options, name) for name in SHARED}))
    return options


def training_options(options: CompareOptions, position: str, seed: int, vocab_size: int) -> TrainingOptions:
    """The same run for every scheme but its position scheme and seed, on the study's tokenizer (of `vocab_size`
    tokens, as the run records it). One evaluation and one checkpoint, at the end: the study evaluates at every
    length itself."""
    shared = {name: getattr(options, name) for name in SHARED if name != "vocab_size"}
    return resolve(TrainingOptions(
        output_dir=os.path.join(options.output_dir, f"{position}-seed{seed}"), position=position, seed=seed,
        tokenizer=os.path.join(options.output_dir, TOKENIZER_DIR), vocab_size=vocab_size, eval_steps=options.max_steps,
        quiet=True, overwrite=options.overwrite, **shared,
    ))


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
    tokenizer, tokenizer_dir, ids, baseline = study_tokens(options)
    runs = {(p, s): training_options(options, p, s, len(tokenizer)) for p in options.positions
            for s in options.seeds}
    actions = {key: what_to_do(run) for key, run in runs.items()}  # every run is checked before any is trained
    write_json(os.path.join(options.output_dir, STUDY_FILE), {"command": command,
                                                              "settings": dataclasses.asdict(options)})
    os.makedirs(tokenizer_dir, exist_ok=True)
    with saved_whole(tokenizer_dir) as temporary:  # the tokenizer with the record of what it was trained on
        tokenizer.save_pretrained(temporary)
        write_json(os.path.join(temporary, TOKENIZER_SOURCE), tokenizer_source(options))
    lengths = options.lengths
    notice(f"comparing {', '.join(options.positions)} (seeds {', '.join(map(str, options.seeds))}): trained at "
           f"L = {options.seq_len} tokens for {options.max_steps} steps of {options.batch_size} blocks, evaluated on "
           f"{len(ids):,} validation tokens at {', '.join(map(str, lengths))}; unigram baseline "
           f"{baseline['perplexity']:.1f}")

    records = []
    for number, ((position, seed), run) in enumerate(runs.items(), 1):
        label = f"[{number}/{len(runs)}] {position}, seed {seed}"
        action, results = actions[position, seed]
        if action == "reuse":
            notice(f"{label}: reusing the finished run in {run.output_dir}")
        else:
            notice(f"{label}: training ...")
            results = train(dataclasses.replace(run, resume=action == "resume")).to_dict()
            remove_checkpoints(run.output_dir)  # optimizer state for --resume; the study keeps only the final model
        evaluation_start = time.perf_counter()
        record = {"position": position, "seed": seed, "output_dir": run.output_dir,
                  "parameters": results["parameters"], "train_seconds": results["train_seconds"],
                  "wall_seconds": results["wall_seconds"], **evaluate_run(run, ids, lengths, options)}
        record["evaluation_seconds"] = time.perf_counter() - evaluation_start
        records.append(record)
        notice(f"{label}: perplexity " + ", ".join(
            f"{r['length']}: {r['perplexity']:.2f}" if "perplexity" in r else f"{r['length']}: skipped"
            for r in record["results"]) + f" ({results['train_seconds'] / 60:.1f} min of training)")

    table = summarize(records, options.positions, lengths)
    study = {
        "command": command,
        "settings": {**dataclasses.asdict(options), "lengths": lengths, "eval_tokens": len(ids),
                     "tokenizer": tokenizer_dir},
        "hardware": hardware(),
        "unigram_baseline": baseline,
        "wall_seconds": time.perf_counter() - start,
        "train_seconds": sum(record["train_seconds"] for record in records),  # of every run, reused ones too
        "table": table,
        "runs": records,
    }
    write_outputs(study, options.output_dir)
    return study
