"""Passkey retrieval (Mohtashami & Jaggi 2023, "Landmark Attention: Random-Access Infinite Context Length for
Transformers"; the test of Position Interpolation, Chen et al. 2023, and YaRN, Peng et al. 2023).

A 5-digit pass key hides at a chosen depth inside filler text that carries no information (the paper's repeated
sentences), and the model must say it at the end:

    <bos> the grass is green . the sky is ... the pass key is 7 2 9 1 4 . remember it . here we go . ...
          what is the pass key ? the pass key is 7 2 9 1 4
                                                 ^^^^^^^^^ the answer: 5 tokens, one per digit

The depth is where the key sentence starts, as a fraction of the filler: 0 puts it right after `<bos>`, 1 right
before the question. The filler is the paper's sentences, lower-cased and split into words, repeated in order from a
random one and cut wherever the length asks, so that an example has exactly the number of tokens asked. The digits
are drawn uniformly (a leading 0 is allowed): nothing but the key sentence, as far back as the depth says, tells
them.
"""

import random

from .common import BOS, Example, Task

KEY_DIGITS = 5
FILLER = ("the", "grass", "is", "green", ".", "the", "sky", "is", "blue", ".", "the", "sun", "is", "yellow", ".",
          "here", "we", "go", ".", "there", "and", "back", "again", ".")
SENTENCE_STARTS = tuple(i for i, word in enumerate(FILLER) if i == 0 or FILLER[i - 1] == ".")
QUESTION = ("what", "is", "the", "pass", "key", "?", "the", "pass", "key", "is")
DIGITS = tuple("0123456789")
# The depths evaluation puts the key at (at least 5, as the papers' grids).
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def key_sentence(key: tuple[str, ...]) -> tuple[str, ...]:
    return ("the", "pass", "key", "is", *key, ".", "remember", "it", ".")


class Passkey(Task):
    name = "passkey"
    description = "a 5-digit key hidden at a depth inside filler sentences, asked for at the end"
    citation = "Mohtashami & Jaggi 2023, Landmark Attention: Random-Access Infinite Context Length for Transformers"
    words = tuple(dict.fromkeys((*FILLER, *QUESTION, "remember", "it", *DIGITS)))
    min_length = 1 + len(key_sentence(DIGITS[:KEY_DIGITS])) + len(QUESTION) + KEY_DIGITS  # 30: no filler
    breakdown = "depth"

    def example(self, rng: random.Random, length: int, depth: float | None = None) -> Example:
        """One example of exactly `length` tokens, the key at `depth` in [0, 1] (drawn uniformly if None)."""
        self.check_length(length)
        key = tuple(rng.choice(DIGITS) for _ in range(KEY_DIGITS))
        depth = rng.random() if depth is None else depth
        filler_length = length - self.min_length
        start = rng.choice(SENTENCE_STARTS)
        filler = [FILLER[(start + i) % len(FILLER)] for i in range(filler_length)]
        before = round(depth * filler_length)
        words = (BOS, *filler[:before], *key_sentence(key), *filler[before:], *QUESTION, *key)
        return Example(words=words, answers=((length - KEY_DIGITS, length),), tags=({"depth": depth},))

    def evaluation_examples(self, length: int, count: int) -> list[Example]:
        """`count` examples spread evenly over `DEPTHS` (count // len(DEPTHS) at each)."""
        return self.examples(0, length, max(1, count // len(DEPTHS)), "evaluation")

    def examples(self, seed: int, length: int, count: int, purpose: str = "train") -> list[Example]:
        """Training examples put the key at a depth drawn uniformly; an evaluation set puts `count` of them at
        each of `DEPTHS`, so that every depth of the grid is scored on as many keys."""
        if purpose == "train":
            return super().examples(seed, length, count, purpose)
        rng = random.Random(f"{self.name}-{purpose}-{seed}-{length}")
        return [self.example(rng, length, depth) for depth in DEPTHS for _ in range(count)]
