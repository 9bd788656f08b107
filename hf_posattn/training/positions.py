"""Randomized positional encodings (Ruoss et al. 2023): each training batch reads, instead of the positions
0 .. L - 1, an ordered random subset of [0, N), N at least the longest length the model will be evaluated at, so that
every position it meets at evaluation has been seen in training, and only the order of positions, not their values,
can be learned. One subset per batch, shared by its rows, as the paper draws them. The paper evaluates on positions
drawn the same way ("we also randomize at test time"): `drawn_positions`, one draw per example.

Every scheme that reads positions gets them: absolute tables and waves, rotary angles, and the score biases (ALiBi,
T5, KERPLE, FIRE), which take their distances from the position ids.
"""

import random

import torch
from transformers import default_data_collator


class RandomPositions:
    """A data collator: `default_data_collator`'s batch, plus `position_ids`, a sorted random subset of
    [0, `limit`) of the block's length, drawn per batch from a generator seeded with `seed`."""

    def __init__(self, limit: int, seed: int):
        self.limit = limit
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, features: list[dict]) -> dict:
        batch = default_data_collator(features)
        rows, length = batch["input_ids"].shape
        positions = torch.randperm(self.limit, generator=self.generator)[:length].sort().values
        batch["position_ids"] = positions.expand(rows, length).clone()
        return batch


def drawn_positions(limit: int, length: int, key: str) -> list[int]:
    """A sorted random subset of [0, `limit`) of `length` positions, from a generator seeded with `key` alone: the
    same draw for every model that is scored on it."""
    return sorted(random.Random(key).sample(range(limit), length))
