"""The checks of the arguments of the package's public Python entries, and the bounds the command line shares with
them: one place, so that a notebook's `TrainingOptions(max_steps="3")` or `plot_positions(positions=10**6)` is
refused as `posattn train --max-steps 3x` or `posattn plot-positions --positions 1000000` is, before any work.

Each check takes the argument's name and value and returns the value as the entry uses it, or raises a `TypeError`
(a value of the wrong kind) or a `ValueError` (the right kind, out of range) that names the argument and says what it
accepts. A string where a list is expected is one item (a file, a scheme, a text), never a list of characters.
The options dataclasses check their fields in `__post_init__` (`check_fields`); functions declare theirs with
`@checked(name=check, ...)`.

Standard library only: the command line imports the bounds before anything heavy.
"""

import functools
import inspect
import math
import numbers
import os
from collections.abc import Callable, Iterable, Mapping

# The bounds the command line enforces too (cli_types reads them from here).
SEEDS = 2**32  # a random seed is 0 to 2**32 - 1: what transformers' set_seed takes
MAX_PLOTTED_POSITIONS = 4096  # plot-positions draws a positions x positions similarity map: 4096² is 64 MB
MAX_PLOTTED_DIMENSIONS = 4096  # ... and a positions x dimensions table: at most 64 MB too (a model's is smaller)

Check = Callable[[str, object], object]


def shown(value) -> str:
    """A value as a message shows it: its repr and its type."""
    text = repr(value)
    return f"{text[:60]}... ({type(value).__name__})" if len(text) > 60 else f"{text} ({type(value).__name__})"


def integer(name: str, value, minimum: int = 1, maximum: int | None = None) -> int:
    """A whole number from `minimum` to `maximum` (a bool, a float or a string is refused: `16.5` and `"3"` are
    mistakes, not numbers to round or parse)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {shown(value)}.")
    if value < minimum or (maximum is not None and value > maximum):
        if maximum is None:
            bound = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
        else:
            bound = f"an integer from {minimum} to {maximum}"
        raise ValueError(f"{name} must be {bound}, got {value}.")
    return int(value)


def even(name: str, value, minimum: int = 2, maximum: int | None = None) -> int:
    """An even whole number (dimensions that pair a sine with a cosine)."""
    value = integer(name, value, minimum, maximum)
    if value % 2:
        raise ValueError(f"{name} must be even (sines are paired with cosines), got {value}.")
    return value


def seed(name: str, value) -> int:
    return integer(name, value, minimum=0, maximum=SEEDS - 1)


def number(name: str, value, minimum: float = -math.inf, above: float | None = None) -> float:
    """A finite real number (ints too; not a bool or a string), at least `minimum`, or greater than `above`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {shown(value)}.")
    if not math.isfinite(value) or value < minimum or (above is not None and value <= above):
        if above is not None:
            bound = f" greater than {above:g}"
        else:
            bound = f" of at least {minimum:g}" if minimum > -math.inf else ""
        raise ValueError(f"{name} must be a finite number{bound}, got {value}.")
    return float(value)


def positive(name: str, value) -> float:
    return number(name, value, above=0)


def text(name: str, value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {shown(value)}.")
    return value


def flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {shown(value)}.")
    return value


def path(name: str, value):
    """A path: a string or an `os.PathLike` (kept as given: the options resolve paths once, later)."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (a string or a pathlib.Path), got {shown(value)}.")
    return value


def mapping(name: str, value) -> dict:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict, got {shown(value)}.")
    return dict(value)


def one_or_more(item: Check) -> Check:
    """A list of what `item` accepts: one value alone is one item (a string is one string, not its characters); a
    list or tuple is kept as it is, its items checked."""
    def check(name: str, value):
        if isinstance(value, (str, bytes, os.PathLike, numbers.Number)):
            return [item(name, value)]
        if isinstance(value, Mapping) or not isinstance(value, Iterable):
            raise TypeError(f"{name} must be a list (or one value), got {shown(value)}.")
        items = [item(f"{name}[{index}]", part) for index, part in enumerate(value)]
        return value if isinstance(value, (list, tuple)) else items

    return check


def texts(name: str, value):
    """Texts to read: one string is one text; any other iterable of strings is passed on as it is (a generator or a
    dataset is read once, by whoever takes it)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a string or an iterable of strings (one text each), got {shown(value)}.")
    return value


def optional(check: Check) -> Check:
    """`check`, or None."""
    return lambda name, value: None if value is None else check(name, value)


def bounded(check: Callable, **bounds) -> Check:
    """`check` with bounds of its own, e.g. `bounded(integer, minimum=2)`."""
    return lambda name, value: check(name, value, **bounds)


def check_fields(instance, checks: Mapping[str, Check]) -> None:
    """Check the fields of a dataclass `instance` (in its `__post_init__`), each named as the field; values are kept
    as the checks return them (one string given for a list becomes a list of one)."""
    for name, check in checks.items():
        setattr(instance, name, check(name, getattr(instance, name)))


def instance(kind: type) -> Check:
    """An instance of `kind` (e.g. the options of `train`)."""
    def check(name: str, value):
        if not isinstance(value, kind):
            raise TypeError(f"{name} must be a {kind.__name__}, e.g. {kind.__name__}(...), got {shown(value)}.")
        return value

    return check


def checked(**checks: Check):
    """Decorate a public function so that each argument named here is checked (and kept as its check returns it)
    when given; an argument left out takes its default, unchecked."""
    def decorate(function):
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            for name, check in checks.items():
                if name in bound.arguments:
                    bound.arguments[name] = check(name, bound.arguments[name])
            return function(*bound.args, **bound.kwargs)

        return wrapper

    return decorate
