"""The read API's ranges: ``window`` ends at ``end`` (now by default); with ``start`` it is
ambiguous and refused."""

from collections.abc import Callable, Mapping

import pytest

from feedback_monitor.query import BadParameter, Query, points_query, window_query
from feedback_monitor.windows import HOUR, Retention

NOW = 1_700_000_000.0
RETENTION = Retention()
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
