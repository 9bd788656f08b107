"""`posattn compare`: train short, test long. How well does each position scheme extrapolate past the length it
was trained at?

One model per position scheme (and per seed), each with the same preset, data, tokenizer, steps, batch, learning
rate and seed, trained at length `L` with `training.train`; then the perplexity of each on the same validation
tokens in non-overlapping windows of `L`, `2L`, `4L`, `8L` (as Press et al. 2022 evaluate), and a table (CSV,
JSON, Markdown on stdout) and a plot of perplexity against evaluation length, one line per scheme.

    from hf_posattn.compare import CompareOptions, compare
    study = compare(CompareOptions(quick=True))
    print(study["table"])

Learned positions have no vector past `max_position_embeddings` (1,024 in the presets): longer lengths are listed
as skipped, with the reason. Their vectors past `L` exist but were never trained (no training window reaches
them): they keep their random initialisation, shrunk by weight decay.
"""

import csv
import dataclasses
import io
import json
import os
import statistics
import time
from dataclasses import dataclass

from .configuration_posattn import POSITION_EMBEDDING_TYPES
from .corpus import load_texts
from .evaluation import evaluate_lengths_of_ids, token_stream, unigram_baseline
from .reporting import plot_study_training
from .runs import check_output_dir, is_free, locked, notice, plan_run, read_run_record, remove_checkpoints, write_text
from .tokenization import has_tokenizer, train_tokenizer
from .training import RUN_IDENTITY, TrainingOptions, hardware, resolve, train


# The two budgets, measured on 2 CPU cores: `default` 27.5 minutes, `quick` 4. Options given explicitly win.
STUDIES = {
    "default": {"seq_len": 128, "max_steps": 800, "batch_size": 16, "eval_tokens": None,
                "output_dir": os.path.join("runs", "compare")},
    "quick": {"seq_len": 64, "max_steps": 200, "batch_size": 16, "eval_tokens": 32768,
              "output_dir": os.path.join("runs", "compare-quick")},
}
TOKENIZER_DIR = "tokenizer"  # in the study's folder: one tokenizer for every run, so that all see the same tokens
TOKENIZER_SOURCE = "source.json"  # beside it: the data and vocabulary size it was trained with


# What every training run of a study shares.
SHARED = ("preset", "data", "text_column", "seq_len", "max_steps", "batch_size", "learning_rate", "vocab_size",
          "scale_embeddings", "report_to")


@dataclass
class CompareOptions:
    """What to compare. `None` means the study's value (`STUDIES`), else the training preset's."""

    output_dir: str | None = None
    positions: list[str] | None = None  # all five schemes
    factors: list[int] | None = None  # evaluation lengths as multiples of seq_len: 1, 2, 4, 8
    seeds: list[int] | None = None  # [0]
    eval_tokens: int | None = None  # validation tokens scored at every length (default: all)
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


def resolve_study(options: CompareOptions) -> CompareOptions:
    study = STUDIES["quick" if options.quick else "default"]
    options = dataclasses.replace(
        options,
        positions=list(options.positions or POSITION_EMBEDDING_TYPES),
        factors=sorted(set(options.factors or (1, 2, 4, 8))),
        seeds=list(dict.fromkeys(options.seeds if options.seeds is not None else [0])),
        **{name: value if getattr(options, name) is None else getattr(options, name)
           for name, value in study.items()},
    )
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
    return options


def training_options(options: CompareOptions, position: str, seed: int) -> TrainingOptions:
    """The same run for every scheme but its position scheme and seed. One evaluation and one checkpoint, at the
    end: the study evaluates at every length itself."""
    return resolve(TrainingOptions(
        output_dir=os.path.join(options.output_dir, f"{position}-seed{seed}"), position=position, seed=seed,
        tokenizer=os.path.join(options.output_dir, TOKENIZER_DIR), eval_steps=options.max_steps, quiet=True,
        overwrite=options.overwrite, **{name: getattr(options, name) for name in SHARED},
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
    changed = [name for name in (*RUN_IDENTITY, "max_steps") if recorded["options"].get(name) != getattr(run, name)]
    if changed:
        was = ", ".join(f"{name}={recorded['options'].get(name)!r} (now {getattr(run, name)!r})" for name in changed)
        raise ValueError(f"{run.output_dir} holds a run of this study made with other options: {was}. Pass "
                         f"--overwrite to train the study's runs again, or choose another --output-dir.")
    return ("reuse", recorded["results"]) if recorded["results"] is not None else ("resume", None)


def study_tokens(options: CompareOptions):
    """The shared tokenizer (trained once, saved in the study's folder) and the validation ids every model is
    scored on: cut to a multiple of the longest evaluation length, so that every length scores the same tokens."""
    from transformers import AutoTokenizer

    texts = load_texts(options.data, options.text_column)
    folder = os.path.join(options.output_dir, TOKENIZER_DIR)
    if has_tokenizer(folder) and not options.overwrite:
        # Runs added to a study (more seeds or schemes) train on its tokenizer: it must be the one these options
        # would give, or their numbers would not compare with the others'.
        recorded = recorded_tokenizer_source(folder)
        if recorded is not None and recorded != tokenizer_source(options):
            raise ValueError(f"{options.output_dir} holds a study made with other data or vocabulary ({recorded}), "
                             f"whose runs share its tokenizer. Give the same --data, --text-column and --vocab-size, "
                             f"--overwrite to start the study again, or another --output-dir.")
        tokenizer = AutoTokenizer.from_pretrained(folder)
    else:
        tokenizer = train_tokenizer(texts["train"]["text"], options.vocab_size)
    ids = token_stream(tokenizer, texts["validation"]["text"])
    longest = options.seq_len * max(options.factors)
    usable = min(len(ids), options.eval_tokens or len(ids)) // longest * longest
    if usable == 0:
        raise ValueError(f"the validation text has {len(ids)} tokens (--eval-tokens {options.eval_tokens}), fewer "
                         f"than one window of the longest evaluation length {longest} (--seq-len {options.seq_len} x "
                         f"{max(options.factors)}): give more text, or a smaller --seq-len or --factors.")
    baseline = unigram_baseline(token_stream(tokenizer, texts["train"]["text"]), ids[:usable], len(tokenizer))
    return tokenizer, folder, ids[:usable], baseline


def tokenizer_source(options: CompareOptions) -> dict:
    """What the study's tokenizer is trained on, as recorded beside it (`TOKENIZER_SOURCE`)."""
    return {"data": options.data, "text_column": options.text_column, "vocab_size": options.vocab_size}


def recorded_tokenizer_source(folder: str) -> dict | None:
    from .loading import read_json

    path = os.path.join(folder, TOKENIZER_SOURCE)
    return read_json(path) if os.path.isfile(path) else None


def compare(options: CompareOptions, command: str | None = None) -> dict:
    """Train and evaluate every scheme and seed, write `compare.csv`, `compare.json` and `compare.png` in the
    study's folder and return the study (the JSON's content). Bad input raises `ValueError` before any training."""
    from .plots import pyplot

    pyplot()  # without matplotlib, fail now rather than after training every model
    options = resolve_study(options)
    check_output_dir(options.output_dir)
    with locked(options.output_dir):  # one study at a time in a folder
        return run_study(options, command)


def run_study(options: CompareOptions, command: str | None) -> dict:
    from .loading import load_model

    start = time.perf_counter()
    runs = {(p, s): training_options(options, p, s) for p in options.positions for s in options.seeds}
    tokenizer, tokenizer_dir, ids, baseline = study_tokens(options)
    actions = {key: what_to_do(run) for key, run in runs.items()}  # every run is checked before any is trained
    os.makedirs(tokenizer_dir, exist_ok=True)
    tokenizer.save_pretrained(tokenizer_dir)
    write_text(os.path.join(tokenizer_dir, TOKENIZER_SOURCE), json.dumps(tokenizer_source(options)))
    lengths = [options.seq_len * factor for factor in options.factors]
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
        model, _ = load_model(run.output_dir)
        evaluation = evaluate_lengths_of_ids(model, ids, lengths)
        del model
        record = {"position": position, "seed": seed, "output_dir": run.output_dir,
                  "parameters": results["parameters"], "train_seconds": results["train_seconds"],
                  "wall_seconds": results["wall_seconds"],
                  "evaluation_seconds": time.perf_counter() - evaluation_start, "results": evaluation}
        records.append(record)
        notice(f"{label}: perplexity " + ", ".join(
            f"{r['length']}: {r['perplexity']:.2f}" if "perplexity" in r else f"{r['length']}: skipped"
            for r in evaluation) + f" ({results['train_seconds'] / 60:.1f} min of training)")

    table = summarize(records, options, lengths)
    study = {
        "command": command,
        "settings": {**dataclasses.asdict(options), "lengths": lengths, "eval_tokens": len(ids),
                     "tokenizer": tokenizer_dir},
        "hardware": hardware(),
        "unigram_baseline": baseline,
        "wall_seconds": time.perf_counter() - start,
        "table": table,
        "runs": records,
    }
    write_outputs(study, options.output_dir)
    return study


def summarize(records: list[dict], options: CompareOptions, lengths: list[int]) -> list[dict]:
    """One row per scheme: the perplexity at every length (the mean over seeds, with its standard deviation when
    there are several), or why a length was skipped."""
    rows = []
    for position in options.positions:
        runs = [r for r in records if r["position"] == position]
        row = {"position": position, "parameters": runs[0]["parameters"], "seeds": len(runs),
               "train_minutes": statistics.mean(r["train_seconds"] for r in runs) / 60, "perplexity": {},
               "std": {}, "skipped": {}}
        for index, length in enumerate(lengths):
            results = [r["results"][index] for r in runs]
            if "skipped" in results[0]:
                row["skipped"][length] = results[0]["skipped"]
                continue
            values = [r["perplexity"] for r in results]
            row["perplexity"][length] = statistics.mean(values)
            row["std"][length] = statistics.stdev(values) if len(values) > 1 else None
        rows.append(row)
    return rows


def markdown_table(study: dict) -> str:
    lengths = study["settings"]["lengths"]
    seq_len = study["settings"]["seq_len"]
    header = ["scheme", "parameters"] + [f"{length} ({length // seq_len}L)" if length != seq_len else f"{length} (L)"
                                         for length in lengths]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in study["table"]:
        cells = [row["position"], f"{row['parameters'] / 1e6:.2f}M"]
        for length in lengths:
            if length in row["skipped"]:
                cells.append("skipped")
            else:
                std = row["std"][length]
                cells.append(f"{row['perplexity'][length]:.2f}" + (f" ± {std:.2f}" if std is not None else ""))
        lines.append("| " + " | ".join(cells) + " |")
    unigram = f"{study['unigram_baseline']['perplexity']:.2f}"
    lines.append("| " + " | ".join(["unigram baseline (no context)", ""] + [unigram] * len(lengths)) + " |")
    return "\n".join(lines)


def write_outputs(study: dict, folder: str) -> None:
    """The tables and the plot; each file is written whole (a temporary file renamed over the old one)."""
    lengths = study["settings"]["lengths"]
    write_text(os.path.join(folder, "compare.json"), json.dumps(study, indent=2))
    with io.StringIO(newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["position", "parameters", "seeds", "train_minutes"]
                        + [f"ppl_{length}" for length in lengths] + [f"std_{length}" for length in lengths]
                        + ["notes"])
        for row in study["table"]:
            writer.writerow(
                [row["position"], row["parameters"], row["seeds"], f"{row['train_minutes']:.2f}"]
                + [f"{row['perplexity'][n]:.4f}" if n in row["perplexity"] else "" for n in lengths]
                + [f"{row['std'][n]:.4f}" if row["std"].get(n) is not None else "" for n in lengths]
                + ["; ".join(f"{n}: {reason}" for n, reason in row["skipped"].items())])
        write_text(os.path.join(folder, "compare.csv"), file.getvalue())
    plot_study(study, os.path.join(folder, "compare.png"))
    plot_study_training(study, os.path.join(folder, "compare-training.png"))
    write_text(os.path.join(folder, "compare.md"), markdown_table(study))


def plot_study(study: dict, output: str) -> str:
    from .plots import pyplot, save

    plt = pyplot()
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    settings = study["settings"]
    lengths, seq_len = settings["lengths"], settings["seq_len"]
    figure, axes = plt.subplots(figsize=(9, 6), layout="constrained")
    for row in study["table"]:
        shown = [n for n in lengths if n in row["perplexity"]]
        errors = [row["std"][n] or 0 for n in shown] if row["seeds"] > 1 else None
        axes.errorbar(shown, [row["perplexity"][n] for n in shown], yerr=errors, marker="o", capsize=3,
                      label=row["position"] + (" (not evaluated past its last position)" if row["skipped"] else ""))
    axes.axhline(study["unigram_baseline"]["perplexity"], color="gray", linestyle="--", label="unigram baseline")
    axes.axvline(seq_len, color="black", linestyle=":", linewidth=1, label=f"training length L = {seq_len}")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xticks(lengths, [f"{n}\n({n // seq_len}L)" for n in lengths])
    axes.xaxis.set_minor_locator(NullLocator())
    axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))  # plain numbers, not 10^k
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_locator(NullLocator())
    seeds = settings["seeds"]
    axes.set(xlabel="evaluation length (tokens; non-overlapping windows)", ylabel="validation perplexity (log scale)",
             title=f"train short, test long: {settings['preset']} preset, {settings['max_steps']} steps at L = "
                   f"{seq_len}, seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
                   + (" (mean ± std)" if len(seeds) > 1 else ""))
    axes.legend(fontsize=9)
    axes.grid(True, which="major", alpha=0.3)
    return save(figure, output)
