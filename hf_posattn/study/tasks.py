"""The synthetic tasks of the study (passkey, recall, copy, reverse): exact match by decoding at L, 2L, 4L, 8L.

Every model of the study is scored on the same evaluation examples (a fixed seed per length). For each answer the
model is given the words before it and decodes the answer greedily with `generate()` and its KV cache; the answer
is right when every one of its words is. Teacher-forced accuracy (the argmax at each answer position, given the true
words before it) is not used: past the training length it reads far above what decoding gets.

Each answer also carries what it is broken down by (`Task.breakdown`): the depth of the pass key, the distance from
a recall pair to its query, the length of the copied string.
"""

import os

import torch

from ..data.tasks import Task, task_named, training_recipe
from ..data.tasks.common import EVERY_TOKEN, FULL_LENGTH, UP_TO_L
from ..model.positional import length_limit
from ..training.positions import drawn_positions
from .perplexity import skipped_lengths
from .statistics import mean_interval
from .summary import DRAWN_RESULTS
from .tables import interval_cell, length_header, write_tables

EVAL_EXAMPLES = 100  # per evaluation length (passkey: 20 at each of its 5 depths)
DECODE_BATCH_TOKENS = 32768  # prompts decoded at once: at most this many prompt tokens
LOOKUP_EXAMPLES = 20  # recall examples per length in the lookup figure
LEARNED = 0.95  # exact match at L that says a model learned the task: below it, its results past L mean little
# Passkey's summaries (Chen et al. 2023, Peng et al. 2023): the longest length at which every depth is at least 20 %
# right, and the longest at which the mean is at least 80 %.
EVERY_DEPTH, MEAN = 0.2, 0.8


def evaluation_sets(task: Task, lengths: list[int], count: int = EVAL_EXAMPLES) -> dict[int, list]:
    """The examples every model is scored on at each length: from seed 0, whatever the run's seed."""
    return {length: task.evaluation_examples(length, count) for length in lengths}


def evaluation_positions(sets: dict[int, list], limit: int) -> dict[int, list[list[int]]]:
    """The positions a twin trained on positions drawn from [0, `limit`) is scored on: one sorted draw per example
    for its whole sequence, the answers' positions included, seeded by the length and the example's place, so that
    every model reads the same ones."""
    return {length: [drawn_positions(limit, len(example), f"evaluation-positions-{limit}-{length}-{index}")
                     for index, example in enumerate(examples)]
            for length, examples in sets.items()}


@torch.no_grad()
def decode_answers(model, tokenizer, examples, positions: list[list[int]] | None = None) -> list[dict]:
    """Every answer of `examples`, decoded greedily from the true words before it: one dict per answer with
    `correct` and the answer's tags. Prompts of one length are decoded together, without padding. With `positions`
    (one list per example, a position per word), the model reads those, the decoded answer's included, instead of
    0, 1, ...: `generate` is given the positions of the prompt and the answer, and continues on them."""
    by_prompt = {}
    for index, example in enumerate(examples):
        ids = tokenizer.convert_tokens_to_ids(list(example.words))
        for (start, end), tags in zip(example.answers, example.tags or [{}] * len(example.answers)):
            read = None if positions is None else positions[index][:end]
            by_prompt.setdefault((start, end - start), []).append((ids[:start], ids[start:end], read, tags))
    model.eval()
    scored = []
    for (start, size), items in by_prompt.items():
        batch = max(1, DECODE_BATCH_TOKENS // max(start, 1))
        for first in range(0, len(items), batch):
            chunk = items[first:first + batch]
            prompts = torch.tensor([prompt for prompt, _, _, _ in chunk], device=model.device)
            drawn = {} if positions is None else {
                "position_ids": torch.tensor([read for _, _, read, _ in chunk], device=model.device)}
            written = model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                                     max_new_tokens=size, min_new_tokens=size, temperature=None, top_p=None,
                                     top_k=None, pad_token_id=tokenizer.pad_token_id, use_cache=True,
                                     **drawn)[:, start:]
            for row, (_, answer, _, tags) in zip(written.tolist(), chunk):
                scored.append({"correct": row == answer, **tags})
    return scored


def recipe_phrase(settings: dict) -> str:
    """What the runs' loss read and how long their examples were, in words: "the loss on the answers only, examples
    of lengths drawn up to L". A study recorded before tasks declared their recipe read every token (and its
    settings do not say how long its examples were)."""
    loss = settings.get("loss", EVERY_TOKEN)
    lengths = settings.get("train_lengths")
    phrase = "the loss on every token" if loss == EVERY_TOKEN else "the loss on the answers only"
    if lengths == FULL_LENGTH:
        return f"{phrase}, examples of L tokens"
    return f"{phrase}, examples of lengths drawn up to L" if lengths == UP_TO_L else phrase


def breakdown_key(task: Task, value, seq_len: int) -> str:
    """The bin an answer falls in: passkey's depth as given, recall's distance in [0, L), [L, 2L), [2L, 4L), ...,
    copy's and reverse's string length as given."""
    if task.breakdown != "distance":
        return f"{value:g}"
    bound = seq_len
    while value >= bound:
        bound *= 2
    return f"<{bound}"


def score_lengths(model, tokenizer, task: Task, sets: dict[int, list], seq_len: int,
                  positions: dict[int, list] | None = None) -> list[dict]:
    """Exact match at every length of `sets`, overall and by the task's breakdown; `{"length": n, "skipped": why}`
    at a length the model cannot take (a length-bounded scheme past its table). `positions`: the positions each
    example is read at (`evaluation_positions`), else 0, 1, ..."""
    results = []
    limit = length_limit(model.config, model.dtype)
    for length, examples in sets.items():
        if limit is not None and length > limit.positions:
            results.append({"length": length, "skipped": f"past {limit.why}"})
            continue
        scored = decode_answers(model, tokenizer, examples, None if positions is None else positions[length])
        by = {}
        for answer in scored:
            key = breakdown_key(task, answer.get(task.breakdown, 0), seq_len)
            by.setdefault(key, []).append(answer["correct"])
        results.append({"length": length, "exact_match": sum(a["correct"] for a in scored) / len(scored),
                        "answers": len(scored), "by": {key: sum(v) / len(v) for key, v in by.items()}})
    return results


def accuracy_summary(results: list[list[dict]], lengths: list[int]) -> dict:
    """`results`: one list per seed, one entry per length. The mean exact match at each length over seeds with its
    95 % interval, and the breakdown averaged over seeds."""
    summary = {name: {} for name in ("exact_match", "low", "high", "by", "skipped")}
    for index, length in enumerate(lengths):
        at_length = [seed[index] for seed in results]
        if "skipped" in at_length[0]:
            summary["skipped"][length] = at_length[0]["skipped"]
            continue
        interval = mean_interval([r["exact_match"] for r in at_length])
        summary["exact_match"][length], summary["low"][length], summary["high"][length] = (
            interval.mean, interval.low, interval.high)
        keys = at_length[0]["by"]
        summary["by"][length] = {key: sum(r["by"].get(key, 0.0) for r in at_length) / len(at_length) for key in keys}
    return summary


def passkey_summaries(row: dict, lengths: list[int]) -> dict:
    """The longest length at which every depth is >= `EVERY_DEPTH` right, and the longest at which the mean is >=
    `MEAN` (None: not even at L)."""
    measured = [n for n in lengths if n in row["exact_match"]]
    every = [n for n in measured if min(row["by"][n].values()) >= EVERY_DEPTH]
    mean = [n for n in measured if row["exact_match"][n] >= MEAN]
    return {"every_depth_20": max(every, default=None), "mean_80": max(mean, default=None)}


class TaskStudy:
    """The study of a synthetic task: the task's tokenizer, its evaluation sets, exact match by decoding, and the
    accuracy tables and figures. `material`: the evaluation examples at each length, and the training length L that
    the breakdown bins count from."""

    summaries: tuple[str, ...] = ()  # the columns a task adds to its table (`summary_columns`)

    def __init__(self, name: str):
        self.task = task_named(name)
        self.name = self.task.name

    def tokenizer_source(self, options) -> dict:
        return {"task": self.task.name, "words": self.task.vocab_size}

    def prepare(self, options):
        """The task's tokenizer and the evaluation sets at every length (lengths too short for the format are
        refused before any work)."""
        for length in options.lengths:
            self.task.check_length(length)
        sets = evaluation_sets(self.task, options.lengths)
        material = {"sets": sets, "seq_len": options.seq_len}
        if options.random_positions is not None:  # the twins' positions, drawn once for every twin
            material["positions"] = evaluation_positions(sets, options.random_positions)
        return self.task.tokenizer(), material

    def describe(self, options, material) -> str:
        return (f"the {self.task.name} task ({self.task.description}), {len(material['sets'][options.lengths[0]])} "
                f"examples at each length, scored by exact match of the decoded answer")

    def measures(self, options, material) -> dict:
        return {"task": self.task.name, "examples": {n: len(sets) for n, sets in material["sets"].items()}}

    def skipped_lengths(self, run, lengths: list[int]) -> dict[int, str]:
        return skipped_lengths(run, lengths)

    def evaluate(self, model, tokenizer, material, lengths: list[int]) -> list[dict]:
        return score_lengths(model, tokenizer, self.task, material["sets"], material["seq_len"])

    def evaluate_run(self, model, tokenizer, run, material, lengths: list[int]) -> dict:
        """A twin trained on randomized positions is also scored on positions drawn as in its training (Ruoss et
        al. 2023 randomize at test time too): its table row shows those."""
        if run.random_positions is None:
            return {}
        return {DRAWN_RESULTS: score_lengths(model, tokenizer, self.task, material["sets"], material["seq_len"],
                                             material["positions"])}

    def result_line(self, results: list[dict]) -> str:
        return "exact match " + ", ".join(f"{r['length']}: skipped" if "skipped" in r else
                                          f"{r['length']}: {r['exact_match']:.2f}" for r in results)

    def summarize_results(self, results: list[list[dict]], lengths: list[int]) -> dict:
        row = accuracy_summary(results, lengths)
        row["learned"] = row["exact_match"].get(lengths[0], 0.0) >= LEARNED
        return row

    def summarize_runs(self, runs: list[dict]) -> dict:
        return {}

    def settings(self, options, material) -> dict:
        """The task's training recipe (what its loss read, how long its examples were), for the table's caption."""
        return training_recipe(self.task.name)

    def study_fields(self, material) -> dict:
        return {"task": self.task.name, "task_description": self.task.description, "citation": self.task.citation}

    def summary_columns(self, row: dict) -> list[str]:
        """The cells of the columns the task adds (`summaries`)."""
        return []

    def markdown_table(self, study: dict) -> str:
        """Exact match at each length (mean ± the half width of the 95 % interval over seeds); a row whose models
        did not learn the task at L (below 95 %) is marked, its results past L mean little."""
        settings = study["settings"]
        lengths, seq_len = settings["lengths"], settings["seq_len"]
        header = ["scheme", "parameters", *length_header(lengths, seq_len), *self.summaries]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in study["table"]:
            failed = "did not learn at L" if row["extension"] is None else "below 95 % at L"
            label = row["label"] if row["learned"] else f"{row['label']} ({failed})"
            cells = [label, f"{row['parameters'] / 1e6:.2f}M"]
            cells += ["skipped" if n in row.get("skipped", {}) else interval_cell(row["exact_match"][n], row["low"][n])
                      for n in lengths]
            lines.append("| " + " | ".join(cells + self.summary_columns(row)) + " |")
        seeds = settings["seeds"]
        lines.append(f"\nExact match of the greedily decoded answer ({study['task']}: {study['task_description']}), "
                     f"at each length; trained at L = {seq_len} ({recipe_phrase(settings)})"
                     + (f"; mean over {len(seeds)} seeds ± the half width of the 95 % interval." if len(seeds) > 1
                        else "; one seed."))
        if any(row.get("positions") == "drawn" for row in study["table"]):
            lines.append(f"Rows \"+ random positions\": trained and scored on sorted positions drawn from [0, "
                         f"{settings['random_positions']}) for the whole sequence, the decoded answer's included (one "
                         f"draw per example, the same for every model), as Ruoss et al. score theirs; their scores on "
                         f"the plain positions 0 .. M − 1 are in compare.csv and compare.json (plain_exact_match_*).")
        skipped = {f"{n}: {why}" for row in study["table"] for n, why in row.get("skipped", {}).items()}
        if skipped:
            lines.append(f"Skipped (not measured): {'; '.join(sorted(skipped))}.")
        return "\n".join(lines)

    def write_outputs(self, study: dict, folder: str) -> None:
        """The table (md, csv, json) and figures: accuracy against length, every run's training curve, and the
        task's own (`write_task_figures`)."""
        from ..figures.tasks import plot_accuracy
        from ..figures.training import plot_study_training

        lengths = study["settings"]["lengths"]
        columns = ("exact_match", "low", "high")
        header = (["scheme", "position", "extension", "random_positions", "positions", "parameters", "seeds",
                   "train_minutes", "learned"] + [f"{column}_{length}" for column in columns for length in lengths]
                  + [f"plain_{column}_{length}" for column in columns for length in lengths])
        rows = [[row["label"], row["position"], row["extension"] or "", row["random_positions"],
                 row.get("positions", "plain"), row["parameters"], row["seeds"], f"{row['train_minutes']:.2f}",
                 row["learned"]]
                + [row[column].get(length) for column in columns for length in lengths]
                + [row["plain"][column].get(length) if "plain" in row else None for column in columns
                   for length in lengths]
                for row in study["table"]]
        write_tables(study, folder, header, rows, self.markdown_table(study))
        plot_accuracy(study, os.path.join(folder, "compare.png"))
        plot_study_training(study, os.path.join(folder, "compare-training.png"))
        self.write_task_figures(study, folder)

    def write_task_figures(self, study: dict, folder: str) -> None:
        """None beyond every task's."""


class PasskeyStudy(TaskStudy):
    """Passkey adds two summaries (Chen et al. 2023, Peng et al. 2023) and the length x depth heat maps."""

    summaries = ("every depth >= 20 %", "mean >= 80 %")

    def summarize_results(self, results: list[list[dict]], lengths: list[int]) -> dict:
        row = super().summarize_results(results, lengths)
        return {**row, **passkey_summaries(row, lengths)}

    def summary_columns(self, row: dict) -> list[str]:
        return ["—" if row[name] is None else str(row[name]) for name in ("every_depth_20", "mean_80")]

    def write_task_figures(self, study: dict, folder: str) -> None:
        from ..figures.tasks import plot_depth_grid

        plot_depth_grid(study, os.path.join(folder, "compare-depths.png"))


class RecallStudy(TaskStudy):
    """Recall adds the lookup figure: each head's attention from the query to its pair (`lookup_weights`), measured
    by each run on its own model at L and at the longest length, drawn for each scheme's first run."""

    def evaluate_run(self, model, tokenizer, run, material, lengths: list[int]) -> dict:
        from ..figures.tasks import lookup_weights

        scored = super().evaluate_run(model, tokenizer, run, material, lengths)
        model.set_attn_implementation("eager")  # the one kernel that returns attention weights
        measured = [n for n in dict.fromkeys((lengths[0], lengths[-1])) if n not in self.skipped_lengths(run, lengths)]
        return {**scored, "lookup": {str(n): lookup_weights(model, tokenizer,
                                                            material["sets"][n][:LOOKUP_EXAMPLES]).tolist()
                                     for n in measured}}

    def write_task_figures(self, study: dict, folder: str) -> None:
        from ..figures.tasks import plot_lookup

        rows = {}
        for record in study["runs"]:
            label = record["position"] + (" + random positions" if record.get("random_positions") else "")
            if label not in rows and record.get("lookup"):
                rows[label] = {int(n): torch.tensor(weights) for n, weights in record["lookup"].items()}
        if rows:
            plot_lookup(rows, study["settings"]["seq_len"], os.path.join(folder, "compare-lookup.png"))


TASK_KINDS = {"passkey": PasskeyStudy, "recall": RecallStudy}  # the tasks scored or drawn in their own way
