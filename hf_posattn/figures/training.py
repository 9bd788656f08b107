"""Training curves: the training and validation loss against tokens seen, the learning rate below, and the unigram
baseline, for one run (`training.png` in its folder, shown by its card), several (`posattn plot-training`) or every
run of a study.
"""

import os

from ..common import notice
from ..runfolder import TRAINING_FIGURE, read_log_history, recorded_baseline, recorded_position, run_name
from .common import pyplot, save

TRAINING_SIZE = (10.0, 7.0)  # inches: the losses above, the learning rate below


TOKENS = "num_input_tokens_seen"


def training_series(log_history: list[dict], x: str) -> dict:
    """The curves of one run in the Trainer's `log_history`: training loss, validation loss and learning rate, each
    as `(x values, y values)` against `x` (a key of the logs: 'num_input_tokens_seen' or 'step')."""

    def series(key: str) -> tuple[list, list]:
        points = [(entry[x], entry[key]) for entry in log_history if key in entry]
        return [point[0] for point in points], [point[1] for point in points]

    return {"x": x, "loss": series("loss"), "eval_loss": series("eval_loss"), "learning_rate": series("learning_rate")}


def curve_entries(log_history: list[dict]) -> list[dict]:
    return [entry for entry in log_history if any(key in entry for key in ("loss", "eval_loss", "learning_rate"))]


def plot_training(output: str, runs: dict[str, list], baseline: float | dict[str, float] | None = None,
                  title: str = "") -> dict[str, list[dict]]:
    """Draw the training of `runs` (label: the Trainer's log history, or a list of them, e.g. one per seed, drawn
    in the label's colour) as a PNG at `output`: training loss (solid) and validation loss (dashed, dots) against
    tokens seen (steps when a log lacks the count), the unigram `baseline` loss as a horizontal line (one per label
    when given per label and they differ), and the learning rate in a panel below. Returns the plotted curves,
    `{label: [training_series(...) per history]}`."""
    runs = {label: [value] if value and isinstance(value[0], dict) else list(value) for label, value in runs.items()}
    if not runs or not all(runs.values()) or not all(curve_entries(history) for h in runs.values() for history in h):
        raise ValueError("nothing to draw: every run needs a log history with a loss or learning rate in it.")
    entries = [entry for histories in runs.values() for history in histories for entry in curve_entries(history)]
    x = TOKENS if all(TOKENS in entry for entry in entries) else "step"
    plotted = {label: [training_series(history, x) for history in histories] for label, histories in runs.items()}

    plt = pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import EngFormatter

    figure, (losses, rates) = plt.subplots(2, 1, figsize=TRAINING_SIZE, sharex=True, height_ratios=(3, 1),
                                           layout="constrained")
    colours = {label: f"C{index % 10}" for index, label in enumerate(plotted)}
    for label, curves in plotted.items():
        for curve in curves:
            losses.plot(*curve["loss"], color=colours[label], linewidth=1.2)
            losses.plot(*curve["eval_loss"], color=colours[label], linestyle="--", marker="o", markersize=4)
            rates.plot(*curve["learning_rate"], color=colours[label], linewidth=1.2)
    handles = [Line2D([], [], color="black", label="training loss"),
               Line2D([], [], color="black", linestyle="--", marker="o", markersize=4, label="validation loss")]
    single = len(plotted) == 1 and len(next(iter(plotted.values()))) == 1  # the title names it
    if not single:
        handles += [Line2D([], [], color=colours[label], linewidth=4, label=label) for label in plotted]
    handles += draw_baselines(losses, baseline, colours)
    losses.legend(handles=handles, fontsize=8, loc="upper right")
    losses.set(ylabel="loss (nats per token)", title=title or (
        f"training of {next(iter(plotted))}" if single else "training"))
    losses.grid(True, alpha=0.3)
    rates.set(ylabel="learning rate", xlabel="tokens seen" if x == TOKENS else "optimizer step")
    rates.grid(True, alpha=0.3)
    if x == TOKENS:
        rates.xaxis.set_major_formatter(EngFormatter(sep=""))  # 250k, 1.5M
    save(figure, output)
    return plotted


def draw_baselines(axes, baseline: float | dict[str, float] | None, colours: dict[str, str]) -> list:
    """The unigram baseline as a dotted line: one grey line when there is one value, else one per label in its
    colour. Returns the legend entries."""
    if baseline is None or baseline == {}:
        return []
    values = baseline if isinstance(baseline, dict) else {"": baseline}
    if len(set(values.values())) == 1:
        value = next(iter(values.values()))
        return [axes.axhline(value, color="grey", linestyle=":", linewidth=1.5,
                             label=f"unigram baseline: {value:.3f}")]
    return [axes.axhline(value, color=colours.get(label, "grey"), linestyle=":", linewidth=1.5,
                         label=f"unigram baseline of {label}: {value:.3f}") for label, value in values.items()]


def matplotlib_missing() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return True
    return False


def training_figure(folder: str) -> str | None:
    """The name of the run's training figure, relative to `folder`, when the folder holds one."""
    return TRAINING_FIGURE if os.path.isfile(os.path.join(folder, TRAINING_FIGURE)) else None


def write_training_figure(folder: str, history: list[dict] | None = None, baseline: float | None = None,
                          label: str | None = None) -> str | None:
    """Draw the training of a run as `training.png` in `folder`: its losses and learning rate (`history`, the
    Trainer's `state.log_history`; default: the one saved in `folder`), the unigram `baseline` loss (default: the
    one recorded in `folder`), titled with `label` (default: `run_name(folder)`). Training gives all three when it
    writes its final files in a temporary folder. Without matplotlib, prints a one-line note and returns None."""

    if matplotlib_missing():
        notice(f'no {TRAINING_FIGURE}: drawing it needs matplotlib (pip install "hf-posattn[plot]"); `posattn '
             f'plot-training DIR` draws it later.')
        return None
    output = os.path.join(folder, TRAINING_FIGURE)
    history = read_log_history(folder) if history is None else history
    baseline = recorded_baseline(folder) if baseline is None else baseline
    plot_training(output, {label or run_name(folder): history}, baseline=baseline)
    return output


def plot_study_training(study: dict, output: str) -> str | None:
    """The training curves of every run of a `posattn compare` study in one figure, one colour per scheme (its
    seeds share it), with the study's unigram baseline. Runs without a history (trained before runs kept it, their
    checkpoints removed) are left out with a note; None when none has one."""

    runs = {}
    for record in study["runs"]:
        try:
            history = read_log_history(record["output_dir"])
        except ValueError as error:
            notice(f"{record['position']}, seed {record['seed']}: left out of {os.path.basename(output)}: {error}")
            continue
        label = record["position"] + (" + random positions" if record.get("random_positions") else "")
        runs.setdefault(label, []).append(history)
    if not runs:
        return None
    settings = study["settings"]
    baseline = study.get("unigram_baseline")  # language modelling's; a synthetic task has none
    plot_training(output, runs, baseline=None if baseline is None else baseline["loss"],
                  title=f"training of each scheme: {settings['preset']} preset, {settings['max_steps']} steps at "
                        f"L = {settings['seq_len']}")
    return output


def run_label(given: str, folder: str) -> str:
    """The folder as `given`, with its position scheme (read from `folder`, resolved) when its name does not say
    it."""
    position = recorded_position(folder)
    return given if position is None or position in os.path.basename(os.path.normpath(given)) else \
        f"{given} ({position})"
