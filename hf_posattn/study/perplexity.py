"""Perplexity at several lengths: the language-model task's score. A model is run over the validation tokens in windows
of each length (non-overlapping, or sliding with a stride), and the mean cross-entropy of every token it predicts
gives the perplexity; learned positions are not evaluated past their last vector (listed as skipped, with why).
"""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import arguments
from ..data.unigram import token_stream
from ..model.positional import length_limit, unbounded_schemes
from ..training.options import EVAL_BATCH_TOKENS, TrainingOptions, run_config


def skipped_lengths(run: TrainingOptions, lengths: Sequence[int]) -> dict[int, str]:
    """The lengths that the model `run` trains cannot be evaluated at (`length_limit`, in float32 as the study
    evaluates), with why: known from the options, before any training."""
    limit = length_limit(run_config(run))
    return {length: f"past {limit.why}" for length in lengths if limit is not None and length > limit.positions}


@torch.no_grad()
def perplexity_of_ids(model, ids: Sequence[int], length: int, stride: int | None = None, batch_size: int | None = None,
                      progress: bool = False, per_position: bool = False) -> dict:
    """Perplexity of `model` on the token stream `ids`, in windows of `length` tokens (see the module docstring).

    Returns `{"length", "stride", "loss", "perplexity", "windows", "tokens"}`, `tokens` being the number of
    tokens scored; the tail shorter than a window is left out. `batch_size`: windows per forward pass (default:
    `EVAL_BATCH_TOKENS` tokens' worth). `progress`: a bar over the windows on stderr. `per_position`: also
    `"position_loss"`, from the same forward passes: entry `p - 1` is the mean loss of the token at position `p` of
    a window (predicted from positions 0 to p - 1) over the windows that score it, None where none does (sliding
    windows score only their last `stride` positions after the first window).
    """
    if length < 2:
        raise ValueError(f"cannot evaluate at length {length}: a window scores each token after its first, so it "
                         f"needs at least 2 tokens.")
    stride = stride or length
    if not 0 < stride <= length:
        raise ValueError(f"stride={stride} must be between 1 and the evaluation length {length}.")
    limit = length_limit(model.config, model.dtype)
    if limit is not None and length > limit.positions:
        raise ValueError(f"cannot evaluate at length {length}, past {limit.why}. Evaluate at lengths <= "
                         f"{limit.positions}, or train a scheme that runs at any length "
                         f"({', '.join(unbounded_schemes())}).")
    if len(ids) < length:
        raise ValueError(f"the text has {len(ids)} tokens, fewer than one window of {length}: give more text, "
                         f"or evaluate at a shorter length.")
    starts = range(0, len(ids) - length + 1, stride)
    windows = torch.tensor([ids[start : start + length] for start in starts])
    labels = windows.clone()
    labels[1:, : length - stride] = -100  # sliding: earlier tokens are context only, scored by an earlier window

    batch_size = batch_size or max(1, EVAL_BATCH_TOKENS // length)
    model.eval()
    device = model.device
    # Sums per position of the predicted token (1 .. length - 1); their total is the perplexity's, so the curve and
    # the number come from the same forward passes and cannot disagree.
    position_loss = torch.zeros(length - 1, dtype=torch.float64)
    position_count = torch.zeros(length - 1, dtype=torch.long)
    bar = tqdm(total=len(windows), desc=f"length {length}", unit="window", disable=not progress, leave=False)
    for batch in range(0, len(windows), batch_size):
        bar.update(len(windows[batch : batch + batch_size]))
        batch_ids = windows[batch : batch + batch_size].to(device)
        targets = labels[batch : batch + batch_size, 1:].to(device)  # position t predicts the token at t + 1
        logits = model(input_ids=batch_ids, use_cache=False).logits[:, :-1]
        losses = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100,
                                 reduction="none").view(targets.shape)
        scored = targets != -100
        position_loss += (losses * scored).sum(0).double().cpu()
        position_count += scored.sum(0).cpu()
    bar.close()
    total_tokens = int(position_count.sum())
    mean = float(position_loss.sum()) / total_tokens
    result = {"length": length, "stride": None if stride == length else stride, "loss": mean,
              "perplexity": math.exp(mean), "windows": len(windows), "tokens": total_tokens}
    if per_position:
        result["position_loss"] = [float(loss / count) if count else None
                                   for loss, count in zip(position_loss.tolist(), position_count.tolist())]
    return result


# What the public entries accept (arguments.checked): the command line's bounds (`posattn evaluate`).
LENGTH = arguments.bounded(arguments.integer, minimum=2)  # a window scores each token after its first
WINDOWS = dict(text=arguments.one_or_more(arguments.text), stride=arguments.optional(arguments.integer),
               batch_size=arguments.optional(arguments.integer))


@arguments.checked(length=LENGTH, **WINDOWS)
def perplexity(model, tokenizer, text: str | Sequence[str], length: int, stride: int | None = None,
               batch_size: int | None = None) -> dict:
    """Perplexity of `model` on `text` (a string, or documents joined with the end-of-text token) at `length`."""
    return perplexity_of_ids(model, token_stream(tokenizer, text), length, stride, batch_size)


@arguments.checked(lengths=arguments.one_or_more(LENGTH), **WINDOWS)
def evaluate_lengths(model, tokenizer, text: str | Sequence[str], lengths: Sequence[int], stride: int | None = None,
                     batch_size: int | None = None) -> list[dict]:
    """`perplexity` at each length (the text tokenised once). A length the model cannot take (a length-bounded scheme
    past `max_position_embeddings`) gives `{"length": L, "skipped": reason}` instead of numbers."""
    return evaluate_lengths_of_ids(model, token_stream(tokenizer, text), lengths, stride, batch_size)


def evaluate_lengths_of_ids(model, ids: Sequence[int], lengths: Sequence[int], stride: int | None = None,
                            batch_size: int | None = None, progress: bool = False,
                            per_position: bool = False) -> list[dict]:
    """`evaluate_lengths` on a token stream: the same ids at every length (e.g. a stream cut to a multiple of the
    longest length, so that every length scores the same tokens). `per_position`: the longest length the model
    takes also gets its loss at each position of the window (`perplexity_of_ids`)."""
    limit = length_limit(model.config, model.dtype)
    usable = [length for length in lengths if limit is None or length <= limit.positions]
    results = []
    for length in lengths:
        if length not in usable:
            results.append({"length": length, "skipped": f"past {limit.why}"})
            continue
        results.append(perplexity_of_ids(model, ids, length, min(stride, length) if stride else None, batch_size,
                                         progress, per_position=per_position and length == max(usable)))
    return results
