"""Multi-query associative recall (Arora et al. 2023, "Zoology: Measuring and Improving Recall in Efficient Language
Models"): key-value pairs, then some of the keys again, each to be answered with its value.

    <bos> n2 n0 ... k7 v3 k12 v9 k1 v14 k4 v4 n1 n3 ... k12 v9 k4 v4 k7 v3 k1 v14
                    [-- the pairs, at a depth --]               ^^    ^^    ^^     ^^ the answers

It is the lesson's dictionary lookup done by a trained model on its own context: the query is the repeated key, the
keys are the keys of the pairs, and the value to return sits right after the key that matches. The pairs block sits
at a depth in [0, 1] inside noise words that carry nothing (as the pass key does in its filler), and the queries come
at the end, so that the distance from a pair back to its query grows with the length: at 8L it is up to 8L tokens.
Keys within an example are distinct; values are drawn independently (two keys may share one). Every key is queried
once, in a random order, as in Zoology's MQAR: each example teaches as many lookups as it has pairs.

Trained as MQAR is: the loss reads the answers only (the pairs and the noise are random, nothing to predict there),
on examples of lengths drawn up to L, so that the pairs sit at every distance from their queries that fits L.
"""

import random

from .common import ANSWERS, BOS, UP_TO_L, Example, Task

NUM_KEYS, NUM_VALUES, NUM_NOISE = 16, 16, 4
KEYS = tuple(f"k{i}" for i in range(NUM_KEYS))
VALUES = tuple(f"v{i}" for i in range(NUM_VALUES))
NOISE = tuple(f"n{i}" for i in range(NUM_NOISE))
PAIRS = 4
QUERIES = PAIRS  # every key queried


class Recall(Task):
    name = "recall"
    description = f"{PAIRS} key-value pairs at a depth inside noise, then every key again, answered with its value"
    citation = "Arora et al. 2023, Zoology: Measuring and Improving Recall in Efficient Language Models"
    words = (*KEYS, *VALUES, *NOISE)
    min_length = 1 + 2 * PAIRS + 2 * QUERIES  # 17: no noise
    breakdown = "distance"
    loss = ANSWERS
    train_lengths = UP_TO_L

    def example(self, rng: random.Random, length: int) -> Example:
        """One example of exactly `length` tokens, its pairs at a depth drawn uniformly."""
        self.check_length(length)
        keys = rng.sample(KEYS, PAIRS)
        values = [rng.choice(VALUES) for _ in keys]
        noise = [rng.choice(NOISE) for _ in range(length - self.min_length)]
        before = rng.randint(0, len(noise))
        pairs_start = 1 + before
        words = [BOS, *noise[:before]]
        for key, value in zip(keys, values):
            words += [key, value]
        words += noise[before:]
        answers, tags = [], []
        for pair in rng.sample(range(PAIRS), QUERIES):  # the queries in an order of their own
            query = len(words)
            words += [keys[pair], values[pair]]
            answers.append((query + 1, query + 2))
            tags.append({"distance": query - (pairs_start + 2 * pair)})
        return Example(words=tuple(words), answers=tuple(answers), tags=tuple(tags))
