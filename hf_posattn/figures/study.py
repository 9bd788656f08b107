"""The study's figures: the score against evaluation length for every scheme (mean over seeds, 95 % interval), and the
loss at each position of the longest window, minus the unigram model's on the same tokens: where each scheme breaks.
"""

import json
import os

from ..data.tasks import LANGUAGE_MODELLING

STUDY_JSON = "compare.json"  # in a study's folder: the study as `compare` returns it


def read_study(path: str) -> dict:
    """A study as `compare` returned it, read back from its JSON file (`compare.json` in the study's folder, or the
    file itself), ready for `plot_study`, `plot_position_loss` and `markdown_table`: JSON keeps the keys of the
    table's numbers by evaluation length as text, and they are numbers again here."""
    file = os.path.join(path, STUDY_JSON) if os.path.isdir(path) else path
    with open(file, encoding="utf-8") as handle:
        study = json.load(handle)
    study["settings"].setdefault("task", LANGUAGE_MODELLING)  # recorded before studies had tasks
    for row in study["table"]:
        for numbers in (row, row.get("plain", {})):  # a twin's row holds its plain-position numbers too
            for key, value in numbers.items():
                if isinstance(value, dict) and value and all(name.isdigit() for name in value):
                    numbers[key] = {int(name): number for name, number in value.items()}
    return study


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
    from .common import pyplot, save

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
    from .common import pyplot, save

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
