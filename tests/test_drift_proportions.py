"""The two-proportion test: prediction and label drift from counts, in blocks."""

import math

import pytest

from feedback_monitor.drift import ProportionTest, Status, two_proportion_z
from tests.drift_streams import DetectorContract


def test_z_matches_the_textbook_formula() -> None:
    pooled = 250 / 2000
    expected = (0.15 - 0.10) / math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert two_proportion_z(100, 1000, 150, 1000) == pytest.approx(expected)
    assert two_proportion_z(150, 1000, 100, 1000) == pytest.approx(-expected)


@pytest.mark.parametrize("counts", [(0, 100, 0, 100), (100, 100, 50, 50), (0, 0, 5, 10)])
def test_z_is_zero_when_undefined(counts: tuple[int, int, int, int]) -> None:
    assert two_proportion_z(*counts) == 0.0


class TestProportionTest(DetectorContract):
    make = ProportionTest
    bounds = ((0.8, 1_600), (0.7, 1_100))
    quiet_at = (0.6, 0.99)  # proportions 0.4 and 0.01
    block_slack = 128  # windows close at block ends: 512 samples with blocks of 32


def test_a_fall_in_the_positive_rate_is_a_drift_too() -> None:
    detector = ProportionTest(reference_size=1_000, window_size=1_000)
    detector.update_many(1_000, 300)
    assert detector.update_many(1_000, 150) is Status.DRIFT
    assert detector.statistic < 0


def test_prevalence_from_counts_of_a_commit() -> None:
    detector = ProportionTest(reference_size=10_000, window_size=2_000)
    detector.update_many(10_000, 1_000)
    assert detector.update_many(2_000, 210) is Status.STABLE
    assert detector.update_many(2_000, 300) is Status.DRIFT
