"""Copy and reverse a random string (Kazemnejad et al. 2023, "The Impact of Positional Encoding on Length
Generalization in Transformers"; Ruoss et al. 2023, "Randomized Positional Encodings Boost Length Generalization of
Transformers", their "duplicate string" and "reverse string").

    copy      <bos> q c x c b = q c x c b
    reverse   <bos> q c x c b = b c x c q
                                ^^^^^^^^^ the answer

The symbols are drawn uniformly and independently from 26 letters (a symbol may repeat, so the model cannot find its
place by the symbol alone). An example of T tokens holds a string of n = (T - 2) // 2 symbols (one token less when T
is odd). Trained on strings of every size that fits L tokens, scored on the longer ones that fit 2L, 4L, 8L: exact match of the
whole answer, by string length.
"""

import random

from .common import ANSWERS, BOS, UP_TO_L, Example, Task

ALPHABET = tuple("abcdefghijklmnopqrstuvwxyz")
SEPARATOR = "="


class Copy(Task):
    name = "copy"
    description = "a random string, then the same string again"
    citation = "Kazemnejad et al. 2023, The Impact of Positional Encoding on Length Generalization in Transformers"
    words = (SEPARATOR, *ALPHABET)
    min_length = 4  # <bos> a = a
    breakdown = "string_length"
    # Kazemnejad et al. mask the loss to the output tokens: the string itself is random, nothing to learn there.
    loss = ANSWERS
    train_lengths = UP_TO_L  # strings of every size that fits L

    @staticmethod
    def answer(string: list[str]) -> list[str]:
        return string

    def example(self, rng: random.Random, length: int) -> Example:
        """One example of `length` tokens (`length - 1` when it is odd)."""
        self.check_length(length)
        size = (length - 2) // 2
        string = [rng.choice(ALPHABET) for _ in range(size)]
        words = (BOS, *string, SEPARATOR, *self.answer(string))
        return Example(words=words, answers=((size + 2, 2 * size + 2),), tags=({"string_length": size},))


class Reverse(Copy):
    name = "reverse"
    description = "a random string, then the string reversed"
    citation = "Ruoss et al. 2023, Randomized Positional Encodings Boost Length Generalization of Transformers"

    @staticmethod
    def answer(string: list[str]) -> list[str]:
        return string[::-1]
