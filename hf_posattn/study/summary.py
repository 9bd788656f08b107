"""The study summarised: one row per scheme (and per context extension of a rotary-type scheme, and per scheme
trained on randomized positions), each length's mean over seeds with its 95 % Student t interval. For language
modelling: the perplexity, the growth ppl(kL) / ppl(L) per seed averaged the same way, the loss at each position of
the longest window, and the embedding-signal ratios; for a synthetic task, what `TaskStudy.summarize_results` gives.
"""

from .lm import EXTENSIONS, LanguageModelStudy
from .statistics import mean_interval

RANDOM_POSITIONS = "random positions"  # the label's suffix of a run trained on randomized positions


def seed_summary(values: list[float]) -> dict:
    """The mean over seeds and its 95 % Student t interval (`low`, `high`: None with one seed)."""
    interval = mean_interval(values)
    return {"mean": interval.mean, "low": interval.low, "high": interval.high, "std": interval.std}


def summarize(records: list[dict], positions: list[str], lengths: list[int], study=None) -> list[dict]:
    """One row per scheme (its runs on randomized positions next, in a row of their own), then one per context
    extension of a rotary-type scheme: at every length the mean over seeds with its 95 % interval of what `study`
    measures (default: language modelling, see the module docstring)."""
    study = study or LanguageModelStudy()
    rows = []
    trained = [(position, randomized) for position in positions for randomized in (False, True)
               if any(r["position"] == position and bool(r.get("random_positions")) == randomized for r in records)]
    for position, randomized in trained:
        runs = [r for r in records if r["position"] == position and bool(r.get("random_positions")) == randomized]
        variants = [(None, [r["results"] for r in runs])]
        variants += [(rope_type, [r["extensions"][rope_type] for r in runs])
                     for rope_type in EXTENSIONS if all(rope_type in r.get("extensions", {}) for r in runs)]
        for extension, results in variants:
            label = row_label(position, extension, lengths)
            row = {"position": position, "extension": extension, "random_positions": randomized,
                   "label": f"{label} + {RANDOM_POSITIONS}" if randomized else label,
                   "parameters": runs[0]["parameters"], "seeds": len(runs),
                   "train_minutes": mean_interval([r["train_seconds"] for r in runs]).mean / 60,
                   **study.summarize_results(results, lengths)}
            if extension is None:
                row.update(study.summarize_runs(runs))
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
