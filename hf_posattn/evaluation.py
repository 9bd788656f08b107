"""How well a model predicts held-out text: perplexity at several evaluation lengths, and the unigram baseline.

Perplexity is exp(mean negative log-likelihood per token): a model that spreads its bets evenly over `k` tokens has
perplexity `k`. It is compared with the unigram baseline (each token's frequency in the training text, context
ignored), which any model that learned something from context beats.

Two ways of cutting a long text into windows of `length` tokens:
- **non-overlapping** (`stride=None`, as in Press et al. 2022): consecutive windows, each scored on all its tokens
  but the first; early tokens of a window have little context, so the number is pessimistic;
- **sliding** (`stride < length`): windows start every `stride` tokens and only their last `stride` tokens are
  scored, each with at least `length - stride` tokens of context; closer to the model's best, and costlier.

A length-bounded scheme (learned positions: one trained vector per position up to `max_position_embeddings`, none
beyond; any scheme whose `max_length` says so) cannot be evaluated past its limit: `perplexity` raises a
`ValueError`, and `evaluate_lengths` records the length as skipped with the reason, so that a study over several
lengths still runs for every scheme.
"""

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .configuration_posattn import PosAttnConfig
from .positional import POSITION_SCHEMES
from .tokenization import encode_documents


EVAL_BATCH_TOKENS = 8192  # windows per forward pass, by default: this many tokens' worth


def length_limit(config) -> int | None:
    """The longest input the model can take, as its scheme says (`PositionScheme.max_length`), or None."""
    return POSITION_SCHEMES[config.position_embedding_type].max_length(config)


def unbounded_schemes() -> list[str]:
    """The registered schemes that run at any length (their `max_length` says None)."""
    return [name for name, scheme in POSITION_SCHEMES.items() if scheme.max_length(PosAttnConfig()) is None]


def past_limit(config, limit: int) -> str:
    """Why a length past `limit` is not evaluated."""
    return (f"{config.position_embedding_type} positions: the model has vectors for {limit} positions only "
            f"(max_position_embeddings)")


def token_stream(tokenizer, text: str | Sequence[str]) -> list[int]:
    """One stream of ids: the documents joined with the end-of-text token, as in training."""
    documents = [text] if isinstance(text, str) else list(text)
    return [token for ids in encode_documents(tokenizer, documents) for token in ids]


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
    limit = length_limit(model.config)
    if limit is not None and length > limit:
        raise ValueError(
            f"cannot evaluate at length {length}: {past_limit(model.config, limit)}. Evaluate at lengths <= {limit}, "
            f"or train a scheme that runs at any length ({', '.join(unbounded_schemes())})."
        )
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


def perplexity(model, tokenizer, text: str | Sequence[str], length: int, stride: int | None = None,
               batch_size: int | None = None) -> dict:
    """Perplexity of `model` on `text` (a string, or documents joined with the end-of-text token) at `length`."""
    return perplexity_of_ids(model, token_stream(tokenizer, text), length, stride, batch_size)


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
    limit = length_limit(model.config)
    usable = [length for length in lengths if limit is None or length <= limit]
    results = []
    for length in lengths:
        if length not in usable:
            results.append({"length": length, "skipped": past_limit(model.config, limit)})
            continue
        results.append(perplexity_of_ids(model, ids, length, min(stride, length) if stride else None, batch_size,
                                         progress, per_position=per_position and length == max(usable)))
    return results


def unigram_baseline(train_ids: Sequence[int] | np.ndarray, eval_ids: Sequence[int] | np.ndarray,
                     vocab_size: int) -> dict:
    """Loss and perplexity on `eval_ids` of the unigram model of `train_ids`: every token predicted with its
    training frequency, whatever came before."""
    loss = float(unigram_losses(train_ids, eval_ids, vocab_size).mean())
    return {"loss": loss, "perplexity": math.exp(loss)}


def unigram_losses(train_ids: Sequence[int] | np.ndarray, eval_ids: Sequence[int] | np.ndarray,
                   vocab_size: int) -> np.ndarray:
    """The loss (nats) of each token of `eval_ids` under the unigram model of `train_ids`. Add-one smoothing gives
    unseen tokens a small probability."""
    counts = np.bincount(np.asarray(train_ids).ravel(), minlength=vocab_size).astype(np.float64) + 1.0
    log_probs = np.log(counts / counts.sum())
    return -log_probs[np.asarray(eval_ids).ravel()]


def text_unigram_baseline(tokenizer, train_text: Sequence[str], validation_text: Sequence[str]) -> dict:
    """The unigram baseline of a data set, as `train` and `evaluate` report it: the frequencies of every token of
    the training text, scored on every token of the validation text (documents joined as in training), whatever
    windows a model is evaluated in, so that one text gives one figure."""
    return unigram_baseline(token_stream(tokenizer, train_text), token_stream(tokenizer, validation_text),
                            len(tokenizer))
