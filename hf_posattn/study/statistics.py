"""Means and confidence intervals over seeds, for the numbers the study reports.

A study trains one model per scheme and seed. Seeds differ in initialisation and data order only, so the spread of
a scheme's perplexity over seeds is the noise any comparison between schemes must beat. With n seeds the 95 %
interval of the mean is Student's t interval, `mean ± t(0.975, n - 1) · s / sqrt(n)`, `s` the sample standard
deviation: with 3 seeds t is 4.30, so the interval is wide unless the seeds agree.

Student's t quantile is computed here (numerically, from its density) rather than taken from scipy, which the
package does not otherwise need.
"""

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def student_t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom: 1/2 plus the integral of the density from 0 to t
    (Simpson's rule on a fine grid: exact to about 1e-10 for the quantiles used here)."""
    if t < 0:
        return 1.0 - student_t_cdf(-t, df)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(x: float) -> float:
        return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))

    steps = 2000  # even, for Simpson's rule
    width = t / steps
    total = density(0.0) + density(t)
    total += sum((4 if k % 2 else 2) * density(k * width) for k in range(1, steps))
    return 0.5 + total * width / 3


def student_t_quantile(probability: float, df: int) -> float:
    """The t with P(T <= t) = `probability`, by bisection on the distribution function."""
    if not 0.5 <= probability < 1:
        raise ValueError(f"probability {probability} must be in [0.5, 1).")
    if df < 1:
        raise ValueError(f"Student's t needs at least 1 degree of freedom, got {df}.")
    low, high = 0.0, 1.0
    while student_t_cdf(high, df) < probability:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if student_t_cdf(middle, df) < probability else (low, middle)
    return (low + high) / 2


@dataclass(frozen=True)
class Interval:
    """The mean of `n` values and its confidence interval `[low, high]` (None with a single value: one seed
    says nothing about the spread)."""

    mean: float
    low: float | None
    high: float | None
    std: float | None
    n: int
    confidence: float = 0.95

    @property
    def half_width(self) -> float | None:
        return None if self.high is None else self.high - self.mean


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and Student's t interval of `values` (e.g. one perplexity per seed)."""
    values = [float(value) for value in values]
    if not values:
        raise ValueError("no values to average: give at least one.")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return Interval(mean, None, None, None, 1, confidence)
    std = statistics.stdev(values)
    half = student_t_quantile(0.5 + confidence / 2, len(values) - 1) * std / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half, std, len(values), confidence)
