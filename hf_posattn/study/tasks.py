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

from ..data.tasks import Task, task_named
from .statistics import mean_interval

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


@torch.no_grad()
def decode_answers(model, tokenizer, examples) -> list[dict]:
    """Every answer of `examples`, decoded greedily from the true words before it: one dict per answer with
    `correct` and the answer's tags. Prompts of one length are decoded together, without padding."""
    by_prompt = {}
    for example in examples:
        ids = tokenizer.convert_tokens_to_ids(list(example.words))
        for (start, end), tags in zip(example.answers, example.tags or [{}] * len(example.answers)):
            by_prompt.setdefault((start, end - start), []).append((ids[:start], ids[start:end], tags))
    model.eval()
    scored = []
    for (start, size), items in by_prompt.items():
        batch = max(1, DECODE_BATCH_TOKENS // max(start, 1))
        for first in range(0, len(items), batch):
            chunk = items[first:first + batch]
            prompts = torch.tensor([prompt for prompt, _, _ in chunk], device=model.device)
            written = model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                                     max_new_tokens=size, min_new_tokens=size, temperature=None, top_p=None,
                                     top_k=None, pad_token_id=tokenizer.pad_token_id, use_cache=True)[:, start:]
            for row, (_, answer, tags) in zip(written.tolist(), chunk):
                scored.append({"correct": row == answer, **tags})
    return scored


def breakdown_key(task: Task, value, seq_len: int) -> str:
    """The bin an answer falls in: passkey's depth as given, recall's distance in [0, L), [L, 2L), [2L, 4L), ...,
    copy's and reverse's string length as given."""
    if task.breakdown != "distance":
        return f"{value:g}"
    bound = seq_len
    while value >= bound:
        bound *= 2
    return f"<{bound}"


def score_lengths(model, tokenizer, task: Task, sets: dict[int, list], seq_len: int) -> list[dict]:
    """Exact match at every length of `sets`, overall and by the task's breakdown."""
    results = []
    for length, examples in sets.items():
        scored = decode_answers(model, tokenizer, examples)
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
    summary = {name: {} for name in ("exact_match", "low", "high", "by")}
    for index, length in enumerate(lengths):
        at_length = [seed[index] for seed in results]
        interval = mean_interval([r["exact_match"] for r in at_length])
        summary["exact_match"][length], summary["low"][length], summary["high"][length] = (
            interval.mean, interval.low, interval.high)
        keys = at_length[0]["by"]
        summary["by"][length] = {key: sum(r["by"].get(key, 0.0) for r in at_length) / len(at_length) for key in keys}
    return summary


def passkey_summaries(row: dict, lengths: list[int]) -> dict:
    """The longest length at which every depth is >= `EVERY_DEPTH` right, and the longest at which the mean is >=
    `MEAN` (None: not even at L)."""
    every = [n for n in lengths if min(row["by"][n].values()) >= EVERY_DEPTH]
    mean = [n for n in lengths if row["exact_match"][n] >= MEAN]
    return {"every_depth_20": max(every, default=None), "mean_80": max(mean, default=None)}


class TaskStudy:
    """What the study does for a synthetic task: the task's tokenizer, its evaluation sets, exact match by
    decoding, and the accuracy tables."""

    metric = "exact_match"

    def __init__(self, name: str):
        self.task = task_named(name)

    def tokenizer_source(self, options) -> dict:
        return {"task": self.task.name, "words": self.task.vocab_size}

    def prepare(self, options):
        """The task's tokenizer and the evaluation sets at every length (lengths too short for the format are
        refused before any work)."""
        for length in options.lengths:
            self.task.check_length(length)
        return self.task.tokenizer(), evaluation_sets(self.task, options.lengths)

    def describe(self, options, material) -> str:
        return (f"the {self.task.name} task ({self.task.description}), {len(material[options.lengths[0]])} examples "
                f"at each length, scored by exact match of the decoded answer")

    def evaluate(self, model, tokenizer, material, options) -> list[dict]:
        return score_lengths(model, tokenizer, self.task, material, options.seq_len)

    def evaluate_run(self, model, run, material) -> dict:
        return {}

    def result_line(self, results: list[dict]) -> str:
        return "exact match " + ", ".join(f"{r['length']}: {r['exact_match']:.2f}" for r in results)

    def summarize_results(self, results: list[list[dict]], lengths: list[int]) -> dict:
        row = accuracy_summary(results, lengths)
        row["learned"] = row["exact_match"][lengths[0]] >= LEARNED
        if self.task.name == "passkey":
            row.update(passkey_summaries(row, lengths))
        return row

    def summarize_runs(self, runs: list[dict]) -> dict:
        return {}

    def study_fields(self, material) -> dict:
        return {"task": self.task.name, "task_description": self.task.description, "citation": self.task.citation}

    def write_figures(self, study: dict, material, folder: str) -> None:
        """Recall: the lookup figure (`plot_lookup`) of each scheme's first run, at L and at the longest length."""
        if self.task.name != "recall":
            return
        from ..figures.tasks import lookup_weights, plot_lookup
        from ..sharing.loading import load_model

        lengths = [study["settings"]["lengths"][0], study["settings"]["lengths"][-1]]
        rows = {}
        for record in study["runs"]:
            label = record["position"] + (" + random positions" if record.get("random_positions") else "")
            if label in rows:
                continue
            model, tokenizer = load_model(record["output_dir"], attn_implementation="eager")
            rows[label] = {n: lookup_weights(model, tokenizer, material[n][:LOOKUP_EXAMPLES]) for n in lengths}
        plot_lookup(rows, study["settings"]["seq_len"], os.path.join(folder, "compare-lookup.png"))
