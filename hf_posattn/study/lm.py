"""The language-model task of the study: perplexity at L, 2L, 4L, 8L on the same held-out tokens, with one BPE tokenizer
shared by every run (trained once, saved in the study's folder), the unigram baseline on the same tokens, the
context-extension rows of rotary-type schemes, and how loud the position signal is in the summed embeddings.
"""

import os
from typing import TYPE_CHECKING

from ..data.corpus import load_texts
from ..data.tasks import LANGUAGE_MODELLING
from ..data.tokenizers import has_tokenizer, train_tokenizer
from ..data.unigram import token_stream, unigram_baseline, unigram_losses
from ..model.positional import EMBEDDING
from ..training.options import TrainingOptions, resolve_paths
from .perplexity import evaluate_lengths_of_ids

if TYPE_CHECKING:  # a study's options
    from .options import CompareOptions


TOKENIZER_DIR = "tokenizer"  # in the study's folder: one tokenizer for every run, so that all see the same tokens
TOKENIZER_SOURCE = "source.json"  # beside it: the data and vocabulary size it was trained with


# Context extension applied to a trained rotary-type model at evaluation, without retraining: transformers'
# rope_type and what the row says.
EXTENSIONS = {"linear": "linear interpolation", "dynamic": "dynamic NTK", "yarn": "YaRN"}


def study_tokens(options: "CompareOptions"):
    """The shared tokenizer (trained once, saved in the study's folder) and the validation ids every model is
    scored on: cut to a multiple of the longest evaluation length, so that every length scores the same tokens."""
    from transformers import AutoTokenizer

    texts = load_texts(options.data, options.text_column)
    folder = os.path.join(options.output_dir, TOKENIZER_DIR)
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
        raise ValueError(f"the validation text has {len(ids)} tokens (--eval-tokens {options.eval_tokens}), fewer "
                         f"than one window of the longest evaluation length {longest} (--seq-len {options.seq_len} x "
                         f"{max(options.factors)}): give more text, or a smaller --seq-len or --factors.")
    # The baseline is scored on the tokens the models are scored on (a multiple of the longest window, or the
    # --eval-tokens subset), so it may differ slightly from `evaluate`'s figure for the whole validation text.
    train_ids = token_stream(tokenizer, texts["train"]["text"])
    losses = unigram_losses(train_ids, ids[:usable], len(tokenizer))
    baseline = {**unigram_baseline(train_ids, ids[:usable], len(tokenizer)),
                "position_loss": unigram_position_loss(losses, options.lengths)}
    return tokenizer, folder, ids[:usable], baseline


def unigram_position_loss(losses, lengths: list[int]) -> dict[str, list[float]]:
    """The unigram model's loss at each position of the windows of every length, averaged over windows, in the
    layout of `perplexity_of_ids`'s `position_loss` (entry p - 1: the token at position p), keyed by the length as
    text (as JSON keeps it). Every scheme is scored on the same tokens at the same positions, so a position that
    holds rare tokens is hard for all of them: the figure subtracts this to show what each scheme's context adds."""
    return {str(length): losses[: len(losses) // length * length].reshape(-1, length)[:, 1:].mean(0).tolist()
            for length in lengths}


def tokenizer_source(options: "CompareOptions") -> dict:
    """What the study's tokenizer is trained on, as recorded beside it (`TOKENIZER_SOURCE`)."""
    return {"data": options.data, "text_column": options.text_column, "vocab_size": options.vocab_size}


def recorded_tokenizer_source(folder: str) -> dict | None:
    """What `tokenizer_source` recorded beside the study's tokenizer (a --data recorded before studies recorded it
    resolved read as it was read then: from here), or None."""
    from ..sharing.loading import read_json

    path = os.path.join(folder, TOKENIZER_SOURCE)
    if not os.path.isfile(path):
        return None
    recorded = read_json(path)
    if isinstance(recorded.get("data"), list):
        recorded["data"] = resolve_paths(TrainingOptions(data=recorded["data"])).data
    return recorded


class LanguageModelStudy:
    """What the study does for language modelling (the `lm` task): the shared BPE tokenizer and validation tokens,
    perplexity at every length, the embedding signal, and the perplexity tables."""

    metric = "perplexity"

    def tokenizer_source(self, options: "CompareOptions") -> dict:
        return tokenizer_source(options)

    def prepare(self, options: "CompareOptions"):
        tokenizer, _, ids, baseline = study_tokens(options)
        return tokenizer, {"ids": ids, "baseline": baseline}

    def describe(self, options: "CompareOptions", material: dict) -> str:
        return (f"perplexity on {len(material['ids']):,} validation tokens; unigram baseline "
                f"{material['baseline']['perplexity']:.1f}")

    def evaluate(self, model, tokenizer, material: dict, options: "CompareOptions") -> list[dict]:
        return evaluate_lengths_of_ids(model, material["ids"], options.lengths, per_position=True)

    def evaluate_run(self, model, run: TrainingOptions, material: dict) -> dict:
        return {"embedding_signal": embedding_signal_of_run(model, run, material["ids"])}

    def result_line(self, results: list[dict]) -> str:
        return "perplexity " + ", ".join(f"{r['length']}: {r['perplexity']:.2f}" if "perplexity" in r else
                                         f"{r['length']}: skipped" for r in results)

    def summarize_results(self, results: list[list[dict]], lengths: list[int]) -> dict:
        from .summary import length_summary, position_loss_summary

        return {**length_summary(results, lengths), "position_loss": position_loss_summary(results)}

    def summarize_runs(self, runs: list[dict]) -> dict:
        from .summary import signal_summary

        return {"embedding_signal": signal_summary([r.get("embedding_signal") for r in runs])}

    def study_fields(self, material: dict) -> dict:
        return {"task": LANGUAGE_MODELLING, "eval_tokens": len(material["ids"]), "unigram_baseline": material["baseline"]}

    def write_figures(self, study: dict, material: dict, folder: str) -> None:
        """None beyond the tables' (tables.py)."""


def extended_model(folder: str, rope_type: str, factor: float):
    """The trained model in `folder` with its rotary frequencies stretched by `factor` (`rope_type` of
    `EXTENSIONS`) from the length it was trained at: the same weights, other `rope_parameters`."""
    from ..sharing.loading import load_model

    model, _ = load_model(folder, rope_parameters={"rope_type": rope_type, "factor": float(factor)})
    return model


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
