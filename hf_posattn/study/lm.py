"""The language-model task of the study: perplexity at L, 2L, 4L, 8L on the same held-out tokens, with one BPE tokenizer
shared by every run (trained once, saved in the study's folder), the unigram baseline on the same tokens, the
context-extension rows of rotary-type schemes, and how loud the position signal is in the summed embeddings.
"""

import os
from typing import TYPE_CHECKING

from ..common import option
from ..data.corpus import load_texts
from ..data.tasks import LANGUAGE_MODELLING
from ..data.tokenizers import has_tokenizer, train_tokenizer
from ..data.unigram import token_stream, unigram_baseline, unigram_losses
from ..model.positional import EMBEDDING
from ..training.options import TrainingOptions
from .folder import tokenizer_dir
from .perplexity import evaluate_lengths_of_ids, skipped_lengths
from .summary import seed_summary
from .tables import interval_cell, length_header, write_tables

if TYPE_CHECKING:  # a study's options
    from .options import CompareOptions


def study_tokens(options: "CompareOptions"):
    """The shared tokenizer (trained once, saved in the study's folder) and the validation ids every model is
    scored on: cut to a multiple of the longest evaluation length, so that every length scores the same tokens."""
    from transformers import AutoTokenizer

    texts = load_texts(options.data, options.text_column)
    folder = tokenizer_dir(options.output_dir)
    if has_tokenizer(folder) and not options.overwrite:
        # Runs added to a study (more seeds or schemes) train on its tokenizer, checked by the study to be the one
        # these options would give (`check_study_tokenizer`), so that their numbers compare with the others'.
        tokenizer = AutoTokenizer.from_pretrained(folder)
    else:
        tokenizer = train_tokenizer(texts["train"]["text"], options.vocab_size)
    ids = token_stream(tokenizer, texts["validation"]["text"])
    longest = options.seq_len * max(options.factors)
    usable = min(len(ids), options.eval_tokens or len(ids)) // longest * longest
    if usable == 0:
        raise ValueError(f"the validation text has {len(ids)} tokens ({option('eval_tokens', options.eval_tokens)}), "
                         f"fewer than one window of the longest evaluation length {longest} "
                         f"({option('seq_len', options.seq_len)} x {max(options.factors)}): give more text, or a "
                         f"smaller {option('seq_len')} or {option('factors')}.")
    # The baseline is scored on the tokens the models are scored on (a multiple of the longest window, or the
    # --eval-tokens subset), so it may differ slightly from `evaluate`'s figure for the whole validation text.
    train_ids = token_stream(tokenizer, texts["train"]["text"])
    losses = unigram_losses(train_ids, ids[:usable], len(tokenizer))
    baseline = {**unigram_baseline(train_ids, ids[:usable], len(tokenizer)),
                "position_loss": unigram_position_loss(losses, options.lengths)}
    return tokenizer, ids[:usable], baseline


def unigram_position_loss(losses, lengths: list[int]) -> dict[str, list[float]]:
    """The unigram model's loss at each position of the windows of every length, averaged over windows, in the
    layout of `perplexity_of_ids`'s `position_loss` (entry p - 1: the token at position p), keyed by the length as
    text (as JSON keeps it). Every scheme is scored on the same tokens at the same positions, so a position that
    holds rare tokens is hard for all of them: the figure subtracts this to show what each scheme's context adds."""
    return {str(length): losses[: len(losses) // length * length].reshape(-1, length)[:, 1:].mean(0).tolist()
            for length in lengths}


class LanguageModelStudy:
    """The study of language modelling (the `lm` task): the shared BPE tokenizer and validation tokens, perplexity at
    every length, the embedding signal, and the perplexity tables and figures."""

    name = LANGUAGE_MODELLING

    def __init__(self, name: str = LANGUAGE_MODELLING):
        assert name == self.name

    def tokenizer_source(self, options: "CompareOptions") -> dict:
        return {"data": options.data, "text_column": options.text_column, "vocab_size": options.vocab_size}

    def prepare(self, options: "CompareOptions"):
        tokenizer, ids, baseline = study_tokens(options)
        return tokenizer, {"ids": ids, "baseline": baseline}

    def describe(self, options: "CompareOptions", material: dict) -> str:
        return (f"perplexity on {len(material['ids']):,} validation tokens; unigram baseline "
                f"{material['baseline']['perplexity']:.1f}")

    def measures(self, options: "CompareOptions", material: dict) -> dict:
        return {"task": self.name, "eval_tokens": len(material["ids"])}

    def skipped_lengths(self, run: TrainingOptions, lengths: list[int]) -> dict[int, str]:
        return skipped_lengths(run, lengths)

    def evaluate(self, model, tokenizer, material: dict, lengths: list[int]) -> list[dict]:
        return evaluate_lengths_of_ids(model, material["ids"], lengths, per_position=True)

    def evaluate_run(self, model, tokenizer, run: TrainingOptions, material: dict, lengths: list[int]) -> dict:
        return {"embedding_signal": embedding_signal_of_run(model, run, material["ids"])}

    def result_line(self, results: list[dict]) -> str:
        return "perplexity " + ", ".join(f"{r['length']}: {r['perplexity']:.2f}" if "perplexity" in r else
                                         f"{r['length']}: skipped" for r in results)

    def summarize_results(self, results: list[list[dict]], lengths: list[int]) -> dict:
        return {**length_summary(results, lengths), "position_loss": position_loss_summary(results)}

    def summarize_runs(self, runs: list[dict]) -> dict:
        return {"embedding_signal": signal_summary([r.get("embedding_signal") for r in runs])}

    def settings(self, options: "CompareOptions", material: dict) -> dict:
        return {"eval_tokens": len(material["ids"])}  # the tokens actually scored: --eval-tokens is at most

    def study_fields(self, material: dict) -> dict:
        return {"task": self.name, "unigram_baseline": material["baseline"]}

    def markdown_table(self, study: dict) -> str:
        return perplexity_table(study)

    def write_outputs(self, study: dict, folder: str) -> None:
        from ..figures.study import plot_position_loss, plot_study
        from ..figures.training import plot_study_training

        lengths = study["settings"]["lengths"]
        columns = ("ppl", "low", "high", "std", "growth", "growth_low", "growth_high")
        fields = {"ppl": "perplexity"}
        header = (["scheme", "position", "extension", "parameters", "seeds", "train_minutes"]
                  + [f"{column}_{length}" for column in columns for length in lengths] + ["notes"])
        rows = [[row["label"], row["position"], row["extension"] or "", row["parameters"], row["seeds"],
                 f"{row['train_minutes']:.2f}"]
                + [row[fields.get(column, column)].get(length) for column in columns for length in lengths]
                + ["; ".join(f"{n}: {reason}" for n, reason in row["skipped"].items())]
                for row in study["table"]]
        write_tables(study, folder, header, rows, self.markdown_table(study))
        plot_study(study, os.path.join(folder, "compare.png"))
        plot_position_loss(study, os.path.join(folder, "compare-positions.png"))
        plot_study_training(study, os.path.join(folder, "compare-training.png"))


def perplexity_table(study: dict) -> str:
    """Perplexity at each length, and its growth from L to the longest (mean ± the 95 % interval's half width over
    seeds), beside the unigram baseline."""
    lengths = study["settings"]["lengths"]
    seq_len = study["settings"]["seq_len"]
    header = ["scheme", "parameters", *length_header(lengths, seq_len), f"ppl({lengths[-1] // seq_len}L) / ppl(L)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in study["table"]:
        cells = [row["label"], f"{row['parameters'] / 1e6:.2f}M"]
        cells += ["skipped" if length in row["skipped"] else interval_cell(row["perplexity"][length],
                                                                         row["low"][length]) for length in lengths]
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


def embedding_signal_of_run(model, run: TrainingOptions, ids: list[int]) -> dict | None:
    """`embedding_signal` of the trained model ("end") and of the model it started from ("start": built from the
    same config with the run's seed, as training builds it), or None for a scheme that adds nothing to the
    embeddings."""
    from transformers import set_seed

    from ..model.modeling_posattn import PosAttnForCausalLM

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
