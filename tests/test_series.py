"""SeriesState and the label-delay buckets, with the stdlib's bisect as the oracle."""

import bisect
import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedback_monitor.confusion import Counts
from feedback_monitor.series import DELAY_BUCKETS, SeriesState, delay_bucket

DAY = 86400.0


def test_buckets_rise_from_a_second_to_a_quarter() -> None:
    assert list(DELAY_BUCKETS) == sorted(set(DELAY_BUCKETS))
    assert (DELAY_BUCKETS[0], DELAY_BUCKETS[-1]) == (1.0, 90 * DAY)
    assert {60.0, 3600.0, DAY, 7 * DAY, 30 * DAY} <= set(DELAY_BUCKETS)


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [(0.0, 0), (0.5, 0), (1.0, 0), (1.000001, 1), (60.0, 2), (61.0, 3), (DAY, 7),
     (DAY + 1, 8), (90 * DAY, 10), (90 * DAY + 1, 11), (1e12, 11), (float("inf"), 11)],
)  # fmt: skip
def test_a_delay_lands_in_the_first_bucket_that_holds_it(seconds: float, bucket: int) -> None:
    assert delay_bucket(seconds) == bucket


@given(st.floats(min_value=0, allow_nan=False) | st.sampled_from(DELAY_BUCKETS))
def test_delay_bucket_agrees_with_bisect(seconds: float) -> None:
    assert delay_bucket(seconds) == bisect.bisect_left(DELAY_BUCKETS, seconds)


def test_a_new_series_state_is_all_zero() -> None:
    state = SeriesState()
    assert state.counts == Counts()
    assert (state.predicted, state.labelled, state.expired, state.pending) == (0, 0, 0, 0)
    assert (state.delay_sum, state.label_coverage) == (0.0, 0.0)  # no NaN before any prediction
    assert state.delays == (0,) * (len(DELAY_BUCKETS) + 1)  # one per bound, and +Inf


@pytest.mark.parametrize(
    ("predicted", "labelled", "expired", "pending", "coverage"),
    [(1, 0, 0, 1, 0.0), (4, 1, 1, 2, 0.25), (3, 3, 0, 0, 1.0), (5, 0, 5, 0, 0.0),
     (3, 2, 0, 1, 2 / 3)],
)  # fmt: skip
def test_pending_and_coverage(
    predicted: int, labelled: int, expired: int, pending: int, coverage: float
) -> None:
    state = SeriesState(predicted=predicted, labelled=labelled, expired=expired)
    assert (state.pending, state.label_coverage) == (pending, coverage)


def test_states_are_immutable_values() -> None:
    state = SeriesState(Counts(tp=1), 2, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.predicted = 3  # type: ignore[misc]
    assert state == SeriesState(Counts(tp=1), 2, 1)
    assert hash(state) == hash(SeriesState(Counts(tp=1), 2, 1))  # usable as a cache key
    assert state != SeriesState(Counts(tp=1), 2, 1, delay_sum=0.5)
