"""The unigram baseline: what a model that ignores every token before the one it predicts would score (each token's
frequency in the training text). Context is worth what a model gains over it. One definition for training,
evaluation and the study: every training token counted, every validation token scored.
"""

import math
from collections.abc import Sequence

import numpy as np

from .tokenizers import encode_documents


def token_stream(tokenizer, text: str | Sequence[str]) -> list[int]:
    """One stream of ids: the documents joined with the end-of-text token, as in training."""
    documents = [text] if isinstance(text, str) else list(text)
    return [token for ids in encode_documents(tokenizer, documents) for token in ids]


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
