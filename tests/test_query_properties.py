"""Query parameters are parsers too: any mapping of strings gives a ``Query`` or ``BadParameter``,
never another exception (which would be a 500)."""

from collections.abc import Callable, Mapping

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from feedback_monitor.query import BadParameter, Query, drift_query, points_query, window_query
from feedback_monitor.windows import Retention

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
def test_drift_query_answers_a_series_and_limit_or_bad_parameter(
    model: str, params: Mapping[str, str]
) -> None:
    try:
        series, limit = drift_query(model, params)
    except BadParameter:
        return
    assert series[0] == model
    assert 1 <= limit <= 100
