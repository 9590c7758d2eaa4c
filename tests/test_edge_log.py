"""``ThrottledLog``: the first error of each reason, then at most one line every so often,
with the count of those left out."""

import logging

import pytest

from feedback_monitor.edge import ThrottledLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def throttled(clock: Clock) -> ThrottledLog:
    return ThrottledLog(logging.getLogger("test_edge_log"), every=10.0, clock=clock)


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test_edge_log"]


def test_the_first_error_is_logged_and_its_repeats_left_out(
    throttled: ThrottledLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(1000):
        throttled.error("store_unavailable", "failed %d", n)
        clock.now += 0.009  # 1,000 in 9 s
    assert lines(caplog) == ["failed 0"]
    assert caplog.records[0].levelno == logging.ERROR


def test_the_next_line_after_the_interval_counts_those_left_out(
    throttled: ThrottledLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(3):
        throttled.error("store_unavailable", "failed %d", n)
    clock.now += 10.0
    throttled.error("store_unavailable", "failed %d", 3)
    throttled.error("store_unavailable", "failed %d", 4)
    clock.now += 25.0
    throttled.error("store_unavailable", "failed %d", 5)
    assert lines(caplog) == [
        "failed 0",
        "failed 3 (and 2 more store_unavailable in the 10 s since its last line, not logged)",
        "failed 5 (and 1 more store_unavailable in the 25 s since its last line, not logged)",
    ]


def test_after_a_quiet_interval_the_next_error_is_logged_as_it_is(
    throttled: ThrottledLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    throttled.error("store_unavailable", "failed %d", 0)
    clock.now += 60.0
    throttled.error("store_unavailable", "failed %d", 1)
    assert lines(caplog) == ["failed 0", "failed 1"]


def test_each_reason_has_its_own_first_line(
    throttled: ThrottledLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    for reason in ("store_unavailable", "store_timeout", "store_unavailable", "store_timeout"):
        throttled.error(reason, "failed: %s", reason)
    assert lines(caplog) == ["failed: store_unavailable", "failed: store_timeout"]
