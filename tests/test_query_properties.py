"""Query parameters are parsers too: any mapping of strings gives a ``Query`` or ``BadParameter``,
never another exception (which would be a 500)."""

from collections.abc import Callable, Mapping

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from feedback_monitor.query import (
    MAX_VALUE,
    BadParameter,
    Query,
    drift_query,
    points_query,
    window_query,
)
from feedback_monitor.records import parse_feedback
from feedback_monitor.windows import Retention, floor

NOW = 1_700_000_000.0
RETENTION = Retention()
NAMES = ["version", "window", "start", "end", "time", "step", "limit", "other"]
TEXTS = st.one_of(
    st.text(),
    st.sampled_from(["arrival", "prediction", "1h", "5m", "0s", "90s", "7d", "1w", "99999999999d"]),
    st.integers(-(10**20), 10**20).map(str),
    st.floats().map(str),
    st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-01T00:00:00", "9999-12-31T23:59:59+14:00"]),
    st.sampled_from(["0001-01-01T00:00:00-14:00", "1e308", "-0", "nan", "inf", "\u0661\u0662"]),
)
PARAMS = st.dictionaries(st.sampled_from(NAMES), TEXTS, max_size=5)
MODELS = st.one_of(st.text(max_size=70), st.sampled_from(["fraud", "m", "a" * 64, "a" * 65]))


@pytest.mark.parametrize("parse", [window_query, points_query])
@given(model=MODELS, params=PARAMS)
@example(model="m", params={"start": "0", "end": "1e308"})
@example(model="m", params={"window": "99999999999d"})
@example(model="m", params={"start": "0001-01-01T00:00:00-14:00"})
@example(model="m", params={"step": "1", "start": "0", "end": "1e12"})
@example(model="m", params={"step": "99999999999d"})
@example(model="m", params={"step": "0"})
@example(model="m", params={"step": "\u0661"})
@example(model="m", params={"start": "1e19", "end": "2e19"})
@example(model="m", params={"window": "100000000000000000w"})
@example(model="m", params={"step": "600000000000000000000000"})
@example(model="m", params={"step": "6" * 4301})  # past Python's digits for an int
@example(model="m", params={"step": "0" * 4300 + "60"})
@example(model="m", params={"window": "9" * 4301 + "h"})
@example(model="m", params={"start": "1_000"})
def test_window_and_points_queries_answer_a_query_or_bad_parameter(
    parse: Callable[[str, Mapping[str, str], float, Retention], Query],
    model: str,
    params: Mapping[str, str],
) -> None:
    try:
        query = parse(model, params, NOW, RETENTION)
    except BadParameter:
        return
    assert query.series[0] == model
    # What the store can read: times from 1970, and numbers within its 64-bit integers.
    assert 0 <= query.span.start < query.span.end < 2**63
    assert 0 <= query.step < 2**63


@given(MODELS, PARAMS)
@example("m", {"limit": "\u0661"})
@example("m", {"limit": "0" * 1000 + "5"})
@example("m", {"limit": "9" * 4301})
def test_drift_query_answers_a_series_and_limit_or_bad_parameter(
    model: str, params: Mapping[str, str]
) -> None:
    try:
        series, limit = drift_query(model, params)
    except BadParameter:
        return
    assert series[0] == model
    assert 1 <= limit <= 100


def test_long_digit_strings_are_the_numbers_they_write() -> None:
    longest = MAX_VALUE - 2  # with the two digits that matter
    assert points_query("m", {"step": "0" * longest + "60"}, NOW, RETENTION).step == 60
    assert drift_query("m", {"limit": "0" * (longest + 1) + "7"}) == (("m", ""), 7)
    with pytest.raises(BadParameter, match="must be a multiple of 60 s"):
        points_query("m", {"step": "6" * MAX_VALUE}, NOW, RETENTION)
    with pytest.raises(BadParameter, match="a whole number from 1 to 100"):
        drift_query("m", {"limit": "9" * MAX_VALUE})


@pytest.mark.parametrize("text", ["1_700_000_000", "\u0661\u0667", "nan", "infinity", "0x10"])
def test_unix_seconds_are_ascii_decimal_numbers(text: str) -> None:
    with pytest.raises(BadParameter, match="'start': not RFC 3339 nor Unix seconds"):
        window_query("m", {"start": text}, NOW, RETENTION)


@pytest.mark.parametrize(
    "text",
    [
        "2023-11-14T22:00:00Z",
        "2023-11-14t22:00:00z",  # RFC 3339 allows either case
        "2023-11-14 22:00:00Z",  # and a space (its section 5.6, note)
        "2023-11-15T03:30:00.5+05:30",
        "2023-11-14T21:59:59.9999996Z",  # to the microsecond: the next minute, both ways
    ],
)
def test_a_query_reads_a_time_as_a_body_reads_its_timestamp(text: str) -> None:
    body = msgspec.json.encode({"prediction": 1, "actual": 1, "timestamp": text})
    stamped = parse_feedback(body).timestamp
    assert stamped is not None
    query = window_query("m", {"start": text, "end": str(NOW)}, NOW, RETENTION)
    assert query.span.start == floor(stamped, query.span.resolution)


def test_points_without_a_step_are_about_sixty_over_the_range_asked() -> None:
    query = points_query("m", {}, NOW, RETENTION)  # an hour to NOW, not on a minute
    assert query.step == 60
    assert (query.span.end - query.span.start) / query.step == 61  # the range, snapped outwards
