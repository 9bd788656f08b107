"""The study summarised: one row per scheme (and per context extension of a rotary-type scheme, and per scheme
trained on randomized positions), each length's mean over seeds with its 95 % Student t interval of what the study's
kind measures (`StudyKind.summarize_results`: perplexity and its growth, or exact match).
"""

from .options import EXTENSIONS
from .statistics import mean_interval

RANDOM_POSITIONS = "random positions"  # the label's suffix of a run trained on randomized positions
# A run's record may hold, beside its `results` on the plain positions 0 .. M - 1, its results on positions drawn as
# in its training (a twin trained on randomized positions, scored as Ruoss et al. score theirs): where every run of a
# row has them, the row shows those, and the plain ones beside them (`plain`).
DRAWN_RESULTS = "drawn_position_results"


def seed_summary(values: list[float]) -> dict:
    """The mean over seeds and its 95 % Student t interval (`low`, `high`: None with one seed)."""
    interval = mean_interval(values)
    return {"mean": interval.mean, "low": interval.low, "high": interval.high, "std": interval.std}


def summarize(records: list[dict], positions: list[str], lengths: list[int], kind) -> list[dict]:
    """One row per scheme (its runs on randomized positions next, in a row of their own), then one per context
    extension of a rotary-type scheme: at every length the mean over seeds with its 95 % interval of what `kind`
    (the study's `StudyKind`) measures. A row of twins shows their results on drawn positions where they were
    measured (`DRAWN_RESULTS`; `positions` says which the row shows), its plain ones in `plain`."""
    rows = []
    trained = [(position, randomized) for position in positions for randomized in (False, True)
               if any(r["position"] == position and bool(r.get("random_positions")) == randomized for r in records)]
    for position, randomized in trained:
        runs = [r for r in records if r["position"] == position and bool(r.get("random_positions")) == randomized]
        drawn = randomized and all(DRAWN_RESULTS in r for r in runs)
        variants = [(None, [r[DRAWN_RESULTS] if drawn else r["results"] for r in runs])]
        variants += [(rope_type, [r["extensions"][rope_type] for r in runs])
                     for rope_type in EXTENSIONS if all(rope_type in r.get("extensions", {}) for r in runs)]
        for extension, results in variants:
            label = row_label(position, extension, lengths)
            row = {"position": position, "extension": extension, "random_positions": randomized,
                   "label": f"{label} + {RANDOM_POSITIONS}" if randomized else label,
                   "parameters": runs[0]["parameters"], "seeds": len(runs),
                   "train_minutes": mean_interval([r["train_seconds"] for r in runs]).mean / 60,
                   **kind.summarize_results(results, lengths)}
            row["positions"] = "drawn" if drawn and extension is None else "plain"
            if extension is None:
                row.update(kind.summarize_runs(runs))
                if drawn:
                    row["plain"] = kind.summarize_results([r["results"] for r in runs], lengths)
            rows.append(row)
    return rows


def row_label(position: str, extension: str | None, lengths: list[int]) -> str:
    if extension is None:
        return position
    return f"{position} + {EXTENSIONS[extension]} (x{lengths[-1] // lengths[0]:g})"
