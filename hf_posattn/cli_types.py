"""The value types of the command line's options: each reads the text of one option and checks it before any work,
raising `argparse.ArgumentTypeError` with what was expected (argparse prints it as `posattn COMMAND: error: ...`,
exit status 2). Standard library only: the command line parses before it imports anything heavy.
"""

import argparse
import json
import math

from .arguments import MAX_PLOTTED_DIMENSIONS, MAX_PLOTTED_POSITIONS, SEEDS  # the bounds the Python entries share


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def finite_float(text: str) -> float:
    """A number, checked before any work: `float` also reads "nan" and "inf", which no option means."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def plotted_positions(text: str) -> int:
    value = positive_int(text)
    if value > MAX_PLOTTED_POSITIONS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_PLOTTED_POSITIONS} positions (the figure compares "
                                         f"every position with every other), got {text}")
    return value


def plotted_dimensions(text: str) -> int:
    """--dim of plot-positions: an even number of dimensions (sines paired with cosines), bounded like --positions."""
    value = positive_int(text)
    if value > MAX_PLOTTED_DIMENSIONS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_PLOTTED_DIMENSIONS} dimensions (the figure draws "
                                         f"every position in every dimension), got {text}")
    if value % 2:
        raise argparse.ArgumentTypeError(f"expected an even number of dimensions (the encoding pairs sines with "
                                         f"cosines), got {text}")
    return value


def valid_text(value: str) -> str:
    """Text from the command line that is valid Unicode: bytes that are not UTF-8 reach Python as lone surrogates,
    which no tokenizer can encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise argparse.ArgumentTypeError(f"not valid UTF-8 text at character {error.start + 1}: check your shell's "
                                         f"encoding (e.g. LANG=C.UTF-8)") from None
    return value


def seed(text: str) -> int:
    """A random seed, checked before any work: transformers' `set_seed` takes 0 to 2**32 - 1."""
    value = int(text)
    if not 0 <= value < SEEDS:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to 2**32 - 1, got {text}")
    return value


def seed_list(text: str) -> list[int]:
    try:
        seeds = [seed(part) for part in text.split(",") if part.strip()]
    except (ValueError, argparse.ArgumentTypeError):
        seeds = []
    if not seeds:
        raise argparse.ArgumentTypeError(f"expected seeds (integers >= 0) separated by commas, e.g. 0,1,2; got {text!r}")
    return seeds


def int_list(text: str) -> list[int]:
    try:
        values = [positive_int(part) for part in text.split(",") if part.strip()]
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, e.g. 128,256,512; got {text!r}")
    if not values:
        raise argparse.ArgumentTypeError("expected at least one length, e.g. 128,256,512")
    return values


def scaling_factor(text: str) -> float:
    """A rotary scaling factor: how many times the training length the inputs may reach (transformers only warns
    about one below 1)."""
    value = float(text)
    if not (math.isfinite(value) and value >= 1):
        raise argparse.ArgumentTypeError(f"expected a number >= 1 (how many times the training length), got {text}")
    return value


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error}): give an object such as "
                                         f"'{{\"rope_type\": \"yarn\", \"factor\": 4}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"rope_type\": \"yarn\", "
                                         f"\"factor\": 4}}', got {text}")
    return value
