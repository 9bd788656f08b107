"""The study's intervals: Student's t quantiles against published table values, and intervals on known inputs."""

import math

import pytest

from hf_posattn.study.statistics import mean_interval, student_t_cdf, student_t_quantile

# t(0.975, df) from standard tables (e.g. NIST/SEMATECH e-Handbook, table of the t distribution's upper critical values).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 19: 2.093, 29: 2.045, 100: 1.984}


@pytest.mark.parametrize("df, expected", T_975.items())
def test_t_quantile_matches_the_table(df, expected):
    assert student_t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)


def test_t_distribution_is_symmetric_and_tends_to_the_normal():
    assert student_t_cdf(0.0, 3) == pytest.approx(0.5)
    assert student_t_cdf(-1.5, 4) == pytest.approx(1 - student_t_cdf(1.5, 4))
    assert student_t_quantile(0.975, 10_000) == pytest.approx(1.95996, abs=1e-3)  # the normal's 97.5 % point


def test_interval_of_known_values():
    # mean 2, sample std 1, n = 3: half width t(0.975, 2) / sqrt(3) = 4.3027 / 1.7321 = 2.4841
    interval = mean_interval([1.0, 2.0, 3.0])
    assert interval.mean == 2.0 and interval.std == 1.0 and interval.n == 3
    assert interval.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert (interval.low, interval.high) == pytest.approx((2 - 2.484138, 2 + 2.484138), rel=1e-6)


def test_identical_seeds_give_a_zero_width_interval_and_one_seed_none():
    assert mean_interval([5.0, 5.0, 5.0]).half_width == 0.0
    single = mean_interval([7.5])
    assert (single.mean, single.low, single.high, single.std) == (7.5, None, None, None)


def test_a_wider_confidence_gives_a_wider_interval():
    values = [10.0, 12.0, 11.0, 13.0]
    assert mean_interval(values, 0.99).half_width > mean_interval(values, 0.95).half_width > mean_interval(values, 0.5).half_width


def test_no_values_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        mean_interval([])
