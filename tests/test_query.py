"""The read API's ranges: ``window`` ends at ``end`` (now by default); with ``start`` it is
ambiguous and refused. Values too long to be a parameter's are refused without being echoed;
numbers are read in linear time."""

import re
from collections.abc import Callable, Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedback_monitor.query import (
    _NUMBER,
    MAX_VALUE,
    BadParameter,
    Query,
    drift_query,
    points_query,
    window_query,
)
from feedback_monitor.windows import HOUR, Retention
from tests.test_query_properties import NOW, RETENTION

Parse = Callable[[str, Mapping[str, str], float, Retention], Query]
PARSERS = [window_query, points_query]


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize("end", [NOW - 5 * HOUR + 17, NOW, NOW + HOUR])
def test_a_window_with_an_end_starts_a_window_before_it(parse: Parse, end: float) -> None:
    given = parse("m", {"window": "2h", "end": str(end)}, NOW, RETENTION)
    assert given == parse("m", {"start": str(end - 2 * HOUR), "end": str(end)}, NOW, RETENTION)


@pytest.mark.parametrize("parse", PARSERS)
def test_a_window_without_an_end_ends_now(parse: Parse) -> None:
    given = parse("m", {"window": "2h"}, NOW, RETENTION)
    assert given == parse("m", {"start": str(NOW - 2 * HOUR), "end": str(NOW)}, NOW, RETENTION)


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize("params", [{"start": "1000"}, {"start": "1000", "end": "9000"}])
def test_a_window_with_a_start_is_refused(parse: Parse, params: dict[str, str]) -> None:
    with pytest.raises(BadParameter, match=r"^Invalid query parameter 'window': "):
        parse("m", {"window": "1h", **params}, NOW, RETENTION)


@pytest.mark.parametrize("name", ["start", "end", "window", "step", "version", "time"])
def test_a_value_too_long_to_be_a_parameter_is_refused_unechoed(name: str) -> None:
    value = "1" * 60_000 + "x"  # a number that fails at its end: what backtracking chokes on
    with pytest.raises(BadParameter) as refused:
        points_query("m", {name: value}, NOW, RETENTION)
    assert refused.value.message == (
        f"Invalid query parameter {name!r}: longer than {MAX_VALUE} characters"
    )


def test_an_unknown_parameter_is_named_in_a_line_of_its_own_length() -> None:
    with pytest.raises(BadParameter) as refused:
        drift_query("m", {"x" * 60_000: "1"})
    assert len(refused.value.message) < 3 * MAX_VALUE
    assert refused.value.message.startswith(f"Invalid query parameter '{'x' * MAX_VALUE}...'")


# The pattern as it was: the same numbers, but a long run of digits backtracked quadratically.
_QUADRATIC = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


@given(st.text(alphabet="0123456789.eE+-x ", max_size=24))
def test_numbers_are_the_ones_they_were(text: str) -> None:
    assert bool(_NUMBER.fullmatch(text)) == bool(_QUADRATIC.fullmatch(text))
