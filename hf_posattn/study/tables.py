"""The study's tables: Markdown (what `posattn compare` prints), CSV and JSON, each written whole, and its figures.
"""

import csv
import io
import os

from ..figures.study import plot_position_loss, plot_study
from ..figures.training import plot_study_training
from ..files import write_json, write_text


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
