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

What the study reports besides the perplexities (docs/study.md reads them):
- with several seeds, the mean and the 95 % interval of the mean (Student's t over seeds, `statistics.py`) at
  every length, and the growth ppl(kL) / ppl(L) per seed, averaged the same way;
- the loss at each position of the window at the longest length, and the unigram model's on the same tokens
  (`compare-positions.png` draws their difference): where a scheme breaks;
- for schemes that read `rope_parameters` (rotary, xpos): rows for linear interpolation, dynamic NTK and YaRN
  applied to the same trained model without retraining, with factor = the longest length / L;
- for schemes that add a vector to the token embeddings (sinusoidal, learned): the ratio of the RMS of that
  vector to the RMS of the (scaled) token embeddings of the validation tokens, at initialisation and after
  training: how loud the position signal is in the sum the model reads.
"""

import csv
import dataclasses
import io
import os
import time
from dataclasses import dataclass

from .configuration_posattn import POSITION_EMBEDDING_TYPES
from .corpus import load_texts
from .evaluation import evaluate_lengths_of_ids, token_stream, unigram_baseline, unigram_losses
from . import positional
from .positional import EMBEDDING, POSITION_SCHEMES
from .statistics import mean_interval
from .files import WriteFailed, resolve_path, saved_whole, write_json, write_text
from .reporting import plot_study_training
from .runs import (STUDY_FILE, is_free, locked, notice, plan_run, plan_study, read_run_record, remove_checkpoints)
from .tokenization import has_tokenizer, train_tokenizer
from .training import (RUN_IDENTITY, TrainingInterrupted, TrainingOptions, TrainingWriteFailed, hardware, resolve,
                       resolve_paths, train)


# The schemes a study trains unless --positions says otherwise. The default study trains every built-in scheme, in
# the registry's order, read from the registry so that a scheme added to positional.py joins it (a scheme registered
# at run time is selected with --positions: it would change the study's time); --quick the five that Press et al.
# (2022) and the first studies compared.
DEFAULT_POSITIONS = tuple(name for name, scheme in POSITION_SCHEMES.items() if scheme.__module__ == positional.__name__)
QUICK_POSITIONS = ("sinusoidal", "learned", "rotary", "alibi", "none")

# Context extension applied to a trained rotary-type model at evaluation, without retraining: transformers'
# rope_type and what the row says.
EXTENSIONS = {"linear": "linear interpolation", "dynamic": "dynamic NTK", "yarn": "YaRN"}

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
TOKENIZER_DIR = "tokenizer"  # in the study's folder: one tokenizer for every run, so that all see the same tokens
TOKENIZER_SOURCE = "source.json"  # beside it: the data and vocabulary size it was trained with


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


def study_lengths(options: CompareOptions) -> list[int]:
    """The evaluation lengths: L times each factor."""
    return [options.seq_len * factor for factor in options.factors]


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
        if recorded is None:
            raise ValueError(f"{folder} holds a tokenizer that this study did not make (it has no {TOKENIZER_SOURCE}):"
                             f" it is not used. Move it away, pass --overwrite to train the study's own, or choose "
                             f"another --output-dir.")
        if recorded != tokenizer_source(options):
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
    # The baseline is scored on the tokens the models are scored on (a multiple of the longest window, or the
    # --eval-tokens subset), so it may differ slightly from `evaluate`'s figure for the whole validation text.
    train_ids = token_stream(tokenizer, texts["train"]["text"])
    losses = unigram_losses(train_ids, ids[:usable], len(tokenizer))
    baseline = {**unigram_baseline(train_ids, ids[:usable], len(tokenizer)),
                "position_loss": unigram_position_loss(losses, study_lengths(options))}
    return tokenizer, folder, ids[:usable], baseline


def unigram_position_loss(losses, lengths: list[int]) -> dict[str, list[float]]:
    """The unigram model's loss at each position of the windows of every length, averaged over windows, in the
    layout of `perplexity_of_ids`'s `position_loss` (entry p - 1: the token at position p), keyed by the length as
    text (as JSON keeps it). Every scheme is scored on the same tokens at the same positions, so a position that
    holds rare tokens is hard for all of them: the figure subtracts this to show what each scheme's context adds."""
    return {str(length): losses[: len(losses) // length * length].reshape(-1, length)[:, 1:].mean(0).tolist()
            for length in lengths}


def tokenizer_source(options: CompareOptions) -> dict:
    """What the study's tokenizer is trained on, as recorded beside it (`TOKENIZER_SOURCE`)."""
    return {"data": options.data, "text_column": options.text_column, "vocab_size": options.vocab_size}


def recorded_tokenizer_source(folder: str) -> dict | None:
    """What `tokenizer_source` recorded beside the study's tokenizer (a --data recorded before studies recorded it
    resolved read as it was read then: from here), or None."""
    from .loading import read_json

    path = os.path.join(folder, TOKENIZER_SOURCE)
    if not os.path.isfile(path):
        return None
    recorded = read_json(path)
    if isinstance(recorded.get("data"), list):
        recorded["data"] = resolve_paths(TrainingOptions(data=recorded["data"])).data
    return recorded


def compare(options: CompareOptions, command: str | None = None) -> dict:
    """Train and evaluate every scheme and seed, write `compare.csv`, `compare.json` and `compare.png` in the
    study's folder and return the study (the JSON's content). Bad input raises `ValueError` before any training."""
    from .plots import pyplot

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
    lengths = study_lengths(options)
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


def evaluate_run(run: TrainingOptions, ids: list[int], lengths: list[int], options: CompareOptions) -> dict:
    """Everything the study measures on one finished run: the perplexity at every length (with the loss at each
    position at the longest), the same for each context extension of a rotary-type model, and the loudness of the
    position signal in the embeddings."""
    from .loading import load_model

    model, _ = load_model(run.output_dir)
    evaluation = {"results": evaluate_lengths_of_ids(model, ids, lengths, per_position=True),
                  "embedding_signal": embedding_signal_of_run(model, run, ids)}
    del model
    factor = max(options.factors)
    if "rope_parameters" in POSITION_SCHEMES[run.position].config_fields and factor > 1:
        evaluation["extensions"] = {}
        for rope_type in EXTENSIONS:
            extended = extended_model(run.output_dir, rope_type, factor)
            evaluation["extensions"][rope_type] = evaluate_lengths_of_ids(extended, ids, lengths, per_position=True)
            del extended
    return evaluation


def extended_model(folder: str, rope_type: str, factor: float):
    """The trained model in `folder` with its rotary frequencies stretched by `factor` (`rope_type` of
    `EXTENSIONS`) from the length it was trained at: the same weights, other `rope_parameters`."""
    from .loading import load_model

    model, _ = load_model(folder, rope_parameters={"rope_type": rope_type, "factor": float(factor)})
    return model


def embedding_signal_of_run(model, run: TrainingOptions, ids: list[int]) -> dict | None:
    """`embedding_signal` of the trained model ("end") and of the model it started from ("start": built from the
    same config with the run's seed, as training builds it), or None for a scheme that adds nothing to the
    embeddings."""
    from transformers import set_seed

    from .modeling_posattn import PosAttnForCausalLM

    if EMBEDDING not in type(model.base_model.positions).contributes():
        return None
    set_seed(run.seed)
    start = PosAttnForCausalLM(model.config).to(model.device)
    return {"start": embedding_signal(start, ids, run.seq_len), "end": embedding_signal(model, ids, run.seq_len)}


def embedding_signal(model, ids: list[int], length: int) -> dict:
    """How loud the position signal is in the sum the model reads: the RMS of what the scheme adds at positions
    0 .. length - 1, the RMS of the token embeddings (times sqrt(d) with `scale_embeddings`) of `ids`, and their
    ratio. The LayerNorm after the sum divides both by the same number, so the ratio is what the layers see."""
    import torch

    base = model.base_model
    with torch.no_grad():
        positions = base.positions.embed(torch.arange(length, device=model.device)).float()
        tokens = base.embeddings.word_embeddings(torch.tensor(ids, device=model.device)).float()
        tokens = tokens * base.embeddings.scale
    position_rms = float(positions.pow(2).mean().sqrt())
    token_rms = float(tokens.pow(2).mean().sqrt())
    return {"position_rms": position_rms, "token_rms": token_rms, "ratio": position_rms / token_rms}


def seed_summary(values: list[float]) -> dict:
    """The mean over seeds and its 95 % Student t interval (`low`, `high`: None with one seed)."""
    interval = mean_interval(values)
    return {"mean": interval.mean, "low": interval.low, "high": interval.high, "std": interval.std}


def summarize(records: list[dict], positions: list[str], lengths: list[int]) -> list[dict]:
    """One row per scheme, then one per context extension of a rotary-type scheme: at every length the mean
    perplexity over seeds with its 95 % interval (`perplexity`, `low`, `high`, `std`), the growth ppl(length) /
    ppl(L) averaged over seeds the same way, or why the length was skipped; the loss at each position of the
    longest window, averaged over seeds (`position_loss`); the embedding signal ratios, averaged likewise."""
    rows = []
    for position in positions:
        runs = [r for r in records if r["position"] == position]
        variants = [(None, [r["results"] for r in runs])]
        variants += [(rope_type, [r["extensions"][rope_type] for r in runs])
                     for rope_type in EXTENSIONS if all(rope_type in r.get("extensions", {}) for r in runs)]
        for extension, results in variants:
            row = {"position": position, "extension": extension, "label": row_label(position, extension, lengths),
                   "parameters": runs[0]["parameters"], "seeds": len(runs),
                   "train_minutes": mean_interval([r["train_seconds"] for r in runs]).mean / 60,
                   **length_summary(results, lengths), "position_loss": position_loss_summary(results)}
            if extension is None:
                row["embedding_signal"] = signal_summary([r.get("embedding_signal") for r in runs])
            rows.append(row)
    return rows


def row_label(position: str, extension: str | None, lengths: list[int]) -> str:
    if extension is None:
        return position
    return f"{position} + {EXTENSIONS[extension]} (x{lengths[-1] // lengths[0]:g})"


def length_summary(results: list[list[dict]], lengths: list[int]) -> dict:
    """`results`: one list per seed, one entry per length (as `evaluate_lengths_of_ids` gives)."""
    summary = {name: {} for name in ("perplexity", "low", "high", "std", "growth", "growth_low", "growth_high",
                                     "skipped")}
    for index, length in enumerate(lengths):
        at_length = [seed[index] for seed in results]
        if "skipped" in at_length[0]:
            summary["skipped"][length] = at_length[0]["skipped"]
            continue
        perplexity = seed_summary([r["perplexity"] for r in at_length])
        growth = seed_summary([r["perplexity"] / seed[0]["perplexity"] for r, seed in zip(at_length, results)])
        for name in ("low", "high", "std"):
            summary[name][length] = perplexity[name]
        summary["perplexity"][length] = perplexity["mean"]
        summary["growth"][length], summary["growth_low"][length], summary["growth_high"][length] = (
            growth["mean"], growth["low"], growth["high"])
    return summary


def position_loss_summary(results: list[list[dict]]) -> dict | None:
    """The per-position loss of the longest length that has one, averaged over seeds."""
    curves = [next((r for r in reversed(seed) if "position_loss" in r), None) for seed in results]
    if any(curve is None for curve in curves):
        return None
    mean = [None if None in values else sum(values) / len(values)
            for values in zip(*(curve["position_loss"] for curve in curves))]
    return {"length": curves[0]["length"], "loss": mean}


def signal_summary(signals: list[dict | None]) -> dict | None:
    if any(signal is None for signal in signals):
        return None
    return {moment: {name: seed_summary([signal[moment][name] for signal in signals])
                     for name in ("position_rms", "token_rms", "ratio")}
            for moment in ("start", "end")}


def interval_cell(mean: float, low: float | None) -> str:
    """`mean ± half width` of the 95 % interval (symmetric: Student's t), or the mean alone with one seed."""
    return f"{mean:.2f}" if low is None else f"{mean:.2f} ± {mean - low:.2f}"


def markdown_table(study: dict) -> str:
    lengths = study["settings"]["lengths"]
    seq_len = study["settings"]["seq_len"]
    header = ["scheme", "parameters"] + [f"{length} ({length // seq_len}L)" if length != seq_len else f"{length} (L)"
                                         for length in lengths] + [f"ppl({lengths[-1] // seq_len}L) / ppl(L)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in study["table"]:
        cells = [row["label"], f"{row['parameters'] / 1e6:.2f}M"]
        for length in lengths:
            if length in row["skipped"]:
                cells.append("skipped")
            else:
                cells.append(interval_cell(row["perplexity"][length], row["low"][length]))
        last = lengths[-1]
        cells.append("" if last in row["skipped"] else interval_cell(row["growth"][last], row["growth_low"][last]))
        lines.append("| " + " | ".join(cells) + " |")
    unigram = f"{study['unigram_baseline']['perplexity']:.2f}"
    lines.append("| " + " | ".join(["unigram baseline (no context)", ""] + [unigram] * len(lengths) + [""]) + " |")
    seeds = study["settings"]["seeds"]
    if len(seeds) > 1:
        lines.append(f"\nMean over {len(seeds)} seeds ({', '.join(map(str, seeds))}) ± the half width of the 95 % "
                     f"interval of the mean (Student's t with {len(seeds) - 1} degrees of freedom).")
    return "\n".join(lines)


def csv_cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def write_outputs(study: dict, folder: str) -> None:
    """The tables and the plots; each file is written whole (a temporary file renamed over the old one)."""
    lengths = study["settings"]["lengths"]
    write_json(os.path.join(folder, "compare.json"), study)
    columns = ("ppl", "low", "high", "std", "growth", "growth_low", "growth_high")
    fields = {"ppl": "perplexity"}
    with io.StringIO(newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["scheme", "position", "extension", "parameters", "seeds", "train_minutes"]
                        + [f"{column}_{length}" for column in columns for length in lengths] + ["notes"])
        for row in study["table"]:
            writer.writerow(
                [row["label"], row["position"], row["extension"] or "", row["parameters"], row["seeds"],
                 f"{row['train_minutes']:.2f}"]
                + [csv_cell(row[fields.get(column, column)].get(length)) for column in columns for length in lengths]
                + ["; ".join(f"{n}: {reason}" for n, reason in row["skipped"].items())])
        write_text(os.path.join(folder, "compare.csv"), file.getvalue())
    plot_study(study, os.path.join(folder, "compare.png"))
    plot_position_loss(study, os.path.join(folder, "compare-positions.png"))
    plot_study_training(study, os.path.join(folder, "compare-training.png"))
    write_text(os.path.join(folder, "compare.md"), markdown_table(study))


def study_title(settings: dict) -> str:
    seeds = settings["seeds"]
    return (f"{settings['preset']} preset, {settings['max_steps']} steps at L = {settings['seq_len']}"
            + (", scaled embeddings" if settings.get("scale_embeddings") else "")
            + f", seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}")


def row_style(row: dict, colours: dict) -> dict:
    """One colour per scheme; its context extensions share it, dashed, dotted or dash-dotted."""
    colour = colours.setdefault(row["position"], f"C{len(colours)}")
    dashes = {None: "-", "linear": "--", "dynamic": ":", "yarn": "-."}
    return {"color": colour, "linestyle": dashes.get(row["extension"], "--")}


def plot_study(study: dict, output: str) -> str:
    from .plots import pyplot, save

    plt = pyplot()
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    settings = study["settings"]
    lengths, seq_len = settings["lengths"], settings["seq_len"]
    figure, axes = plt.subplots(figsize=(11, 6), layout="constrained")
    colours = {}
    rows = study["table"]
    for index, row in enumerate(rows):
        shown = [n for n in lengths if n in row["perplexity"]]
        means = [row["perplexity"][n] for n in shown]
        errors = None
        if row["seeds"] > 1:  # the 95 % interval of the mean, as error bars
            errors = [[mean - row["low"][n] for n, mean in zip(shown, means)],
                      [row["high"][n] - mean for n, mean in zip(shown, means)]]
        # Each row a little to the side of the length it was evaluated at (within a fifth of the way to the next
        # length), so that the error bars of many rows do not cover one another.
        dodge = 2 ** (0.4 * (index - (len(rows) - 1) / 2) / len(rows))
        axes.errorbar([n * dodge for n in shown], means, yerr=errors, marker="o", markersize=4, capsize=2,
                      **row_style(row, colours),
                      label=row["label"] + (" (not evaluated past its last position)" if row["skipped"] else ""))
    axes.axhline(study["unigram_baseline"]["perplexity"], color="gray", linestyle="--", label="unigram baseline")
    axes.axvline(seq_len, color="black", linestyle=":", linewidth=1, label=f"training length L = {seq_len}")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xticks(lengths, [f"{n}\n({n // seq_len}L)" for n in lengths])
    axes.xaxis.set_minor_locator(NullLocator())
    axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))  # plain numbers, not 10^k
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_locator(NullLocator())
    several = len(settings["seeds"]) > 1
    axes.set(xlabel="evaluation length (tokens; non-overlapping windows)", ylabel="validation perplexity (log scale)",
             title=f"train short, test long: {study_title(settings)}"
                   + ("\nmean over seeds, bars: 95 % interval of the mean (Student's t)" if several else ""))
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    axes.grid(True, which="major", alpha=0.3)
    return save(figure, output)


def smoothed(values: list[float], width: int) -> list[float]:
    """A centred moving average: a position's loss is averaged over a few hundred windows only, and its noise would
    hide the shape the figure is about."""
    half = width // 2
    return [sum(values[max(0, i - half): i + half + 1]) / len(values[max(0, i - half): i + half + 1])
            for i in range(len(values))]


def plot_position_loss(study: dict, output: str) -> str | None:
    """The loss at each position of the longest evaluation window, one line per row of the table (mean over seeds
    and windows), minus the unigram model's loss on the same tokens, with the training length marked: an absolute
    scheme breaks right after L. Every row is scored on the same windows, so without the subtraction the rare and
    common tokens at each position would move all the lines together and hide the shape the figure is about."""
    from .plots import pyplot, save

    rows = [row for row in study["table"] if row["position_loss"] is not None]
    if not rows:
        return None
    plt = pyplot()
    settings = study["settings"]
    seq_len = settings["seq_len"]
    figure, axes = plt.subplots(figsize=(12, 6), layout="constrained")
    colours = {}
    longest = max(row["position_loss"]["length"] for row in rows)
    width = max(1, longest // 32)
    for row in rows:
        length = row["position_loss"]["length"]
        unigram = study["unigram_baseline"]["position_loss"][str(length)]
        gains = [(p + 1, loss - base) for p, (loss, base) in enumerate(zip(row["position_loss"]["loss"], unigram))
                 if loss is not None]
        label = row["label"] + (f" (up to {length})" if length < longest else "")
        axes.plot([p for p, _ in gains], smoothed([gain for _, gain in gains], width), linewidth=1.4, label=label,
                  **row_style(row, colours))
    axes.axvline(seq_len, color="black", linestyle=":", linewidth=1.2, label=f"training length L = {seq_len}")
    axes.set_xlim(0, longest)
    axes.set(xlabel="position in the evaluation window (the token predicted from all before it)",
             ylabel="loss minus the unigram model's loss on the same tokens\n(nats per token; 0: no better than "
                    "no context; lower: the context helps more)",
             title=f"where each scheme breaks: loss at each position of {longest}-token windows\n"
                   f"{study_title(settings)}\nmean over seeds and windows, moving average of {width} positions")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    axes.grid(True, alpha=0.3)
    return save(figure, output)
