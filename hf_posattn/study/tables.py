"""The study's tables: Markdown (what `posattn compare` prints), CSV and JSON, each written whole, and its figures.
"""

import csv
import io
import os

from ..data.tasks import LANGUAGE_MODELLING
from ..figures.study import plot_position_loss, plot_study
from ..figures.training import plot_study_training
from ..files import write_json, write_text


def interval_cell(mean: float, low: float | None) -> str:
    """`mean ± half width` of the 95 % interval (symmetric: Student's t), or the mean alone with one seed."""
    return f"{mean:.2f}" if low is None else f"{mean:.2f} ± {mean - low:.2f}"


def markdown_table(study: dict) -> str:
    """The study's table as Markdown: perplexity, or for a synthetic task exact match."""
    if study["settings"].get("task", LANGUAGE_MODELLING) != LANGUAGE_MODELLING:
        return accuracy_table(study)
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


def length_header(lengths: list[int], seq_len: int) -> list[str]:
    return [f"{length} ({length // seq_len}L)" if length != seq_len else f"{length} (L)" for length in lengths]


def accuracy_table(study: dict) -> str:
    """Exact match at each length (mean ± the half width of the 95 % interval over seeds); a row whose models did
    not learn the task at L (below 95 %) is marked, its results past L mean little. Passkey adds its two summaries."""
    settings = study["settings"]
    lengths, seq_len = settings["lengths"], settings["seq_len"]
    passkey = settings["task"] == "passkey"
    header = ["scheme", "parameters", *length_header(lengths, seq_len)]
    header += ["every depth >= 20 %", "mean >= 80 %"] if passkey else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in study["table"]:
        failed = "did not learn at L" if row["extension"] is None else "below 95 % at L"
        label = row["label"] if row["learned"] else f"{row['label']} ({failed})"
        cells = [label, f"{row['parameters'] / 1e6:.2f}M"]
        cells += [interval_cell(row["exact_match"][n], row["low"][n]) for n in lengths]
        if passkey:
            cells += ["—" if row[name] is None else str(row[name]) for name in ("every_depth_20", "mean_80")]
        lines.append("| " + " | ".join(cells) + " |")
    seeds = settings["seeds"]
    lines.append(f"\nExact match of the greedily decoded answer ({study['task']}: {study['task_description']}), at "
                 f"each length; trained at L = {seq_len}"
                 + (f"; mean over {len(seeds)} seeds ± the half width of the 95 % interval." if len(seeds) > 1
                    else "; one seed."))
    return "\n".join(lines)


def write_task_outputs(study: dict, folder: str) -> None:
    """A synthetic task's table (md, csv, json) and figures: accuracy against length, passkey's length x depth heat
    maps, every run's training curve."""
    from ..figures.tasks import plot_accuracy, plot_depth_grid

    lengths = study["settings"]["lengths"]
    write_json(os.path.join(folder, "compare.json"), study)
    with io.StringIO(newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["scheme", "position", "extension", "random_positions", "parameters", "seeds",
                         "train_minutes", "learned"]
                        + [f"{column}_{length}" for column in ("exact_match", "low", "high") for length in lengths])
        for row in study["table"]:
            writer.writerow([row["label"], row["position"], row["extension"] or "", row["random_positions"],
                             row["parameters"], row["seeds"], f"{row['train_minutes']:.2f}", row["learned"]]
                            + [csv_cell(row[column].get(length)) for column in ("exact_match", "low", "high")
                               for length in lengths])
        write_text(os.path.join(folder, "compare.csv"), file.getvalue())
    plot_accuracy(study, os.path.join(folder, "compare.png"))
    if study["task"] == "passkey":
        plot_depth_grid(study, os.path.join(folder, "compare-depths.png"))
    plot_study_training(study, os.path.join(folder, "compare-training.png"))
    write_text(os.path.join(folder, "compare.md"), markdown_table(study))


def csv_cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def write_outputs(study: dict, folder: str) -> None:
    """The tables and the plots; each file is written whole (a temporary file renamed over the old one)."""
    if study["settings"].get("task", LANGUAGE_MODELLING) != LANGUAGE_MODELLING:
        return write_task_outputs(study, folder)
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
