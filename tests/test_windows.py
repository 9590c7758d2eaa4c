"""Time buckets (pure): slots, spans, covering, durations and retention."""

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from feedback_monitor.windows import (
    DAY,
    HOUR,
    LATEST,
    MINUTE,
    RESOLUTIONS,
    Retention,
    Span,
    parse_duration,
    slots,
    spans,
)

YEAR = 365 * DAY
resolutions = st.sampled_from(RESOLUTIONS)
moments = st.floats(0, 100 * YEAR, allow_nan=False)


@st.composite
def aligned_ranges(draw: st.DrawFn) -> tuple[int, int, int]:
    """``(start, end, resolution)``, both ends whole buckets of ``resolution``, start <= end."""
    resolution = draw(resolutions)
    start = draw(st.integers(0, 60 * YEAR // resolution)) * resolution
    length = draw(st.integers(0, 3 * YEAR // resolution)) * resolution
    return start, start + length, resolution


@given(aligned_ranges())
def test_spans_tile_the_range_exactly_in_order(case: tuple[int, int, int]) -> None:
    start, end, resolution = case
    pieces = spans(start, end, resolution)
    assert all(s.start < s.end for s in pieces)
    edges = [start, *(edge for s in pieces for edge in (s.start, s.end)), end]
    # Each piece starts where the last one ended: no gap, no overlap, nothing outside.
    assert edges[0::2] == edges[1::2]
    for piece in pieces:
        assert piece.resolution >= resolution
        assert piece.start % piece.resolution == 0
        assert piece.end % piece.resolution == 0


@given(aligned_ranges())
def test_spans_are_coarsest_in_the_middle_and_fewest(case: tuple[int, int, int]) -> None:
    start, end, resolution = case
    pieces = spans(start, end, resolution)
    sizes = [s.resolution for s in pieces]
    peak = sizes.index(max(sizes)) if sizes else 0
    assert sizes[: peak + 1] == sorted(sizes[: peak + 1])  # finer to coarser
    assert sizes[peak:] == sorted(sizes[peak:], reverse=True)  # then back to finer
    assert len(pieces) <= 2 * len(RESOLUTIONS) - 1
    for piece in pieces:
        # No piece could have been read from fewer, coarser buckets: it holds none whole.
        for coarser in (r for r in RESOLUTIONS if r > piece.resolution):
            first = -(-piece.start // coarser) * coarser
            assert first + coarser > piece.end


def test_spans_of_a_day_and_a_bit() -> None:
    start, end = DAY - 2 * MINUTE, 2 * DAY + HOUR + MINUTE
    assert [(s.start, s.end, s.resolution) for s in spans(start, end, MINUTE)] == [
        (DAY - 2 * MINUTE, DAY, MINUTE),
        (DAY, 2 * DAY, DAY),
        (2 * DAY, 2 * DAY + HOUR, HOUR),
        (2 * DAY + HOUR, 2 * DAY + HOUR + MINUTE, MINUTE),
    ]
    assert spans(HOUR, HOUR, MINUTE) == []
    assert spans(0, DAY, DAY) == [Span(0, DAY, DAY)]


@given(moments, st.floats(0, 10 * DAY, allow_nan=False), resolutions)
@example(0.0, 5e-324, MINUTE)  # a quotient that underflowed to 0 snapped the end inwards
def test_covering_snaps_outwards_to_whole_buckets(start: float, length: float, r: int) -> None:
    end = start + length
    span = Span.covering(start, end, r)
    assert span.resolution == r
    assert span.start % r == 0
    assert span.end % r == 0
    assert span.start <= start < span.start + r
    assert span.end - r < end <= span.end


def test_covering_keeps_edges_already_whole() -> None:
    assert Span.covering(HOUR, 2 * HOUR, MINUTE) == Span(HOUR, 2 * HOUR, MINUTE)
    assert Span.covering(HOUR + 1, 2 * HOUR - 1, HOUR) == Span(HOUR, 2 * HOUR, HOUR)


@given(moments)
def test_slots_hold_the_moment(t: float) -> None:
    assert [r for r, _ in slots(t)] == list(RESOLUTIONS)
    for resolution, start in slots(t):
        assert start % resolution == 0
        assert start <= t < start + resolution


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("48h", 172800), ("90d", 7776000), ("2w", 1209600), (" 1h ", 3600)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "m", "0m", "5x", "-5m", "1.5h", "5 m", "5mm", "forever"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_parse_duration_refuses_more_than_the_calendar_holds() -> None:
    assert parse_duration(f"{LATEST}s") == LATEST  # up to 9999-12-31T23:59:59Z
    for text in (f"{LATEST + 1}s", "100000000000000000w", "9" * 4000 + "d"):
        with pytest.raises(ValueError, match="too long a duration"):
            parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Retention()),
        ("minute=48h,hour=90d,day=forever", Retention(48 * HOUR, 90 * DAY, None)),
        ("minute=2h", Retention(2 * HOUR, 90 * DAY, None)),
        (" hour = 30d , day = 400d ", Retention(48 * HOUR, 30 * DAY, 400 * DAY)),
        ("minute=forever,hour=forever", Retention(None, None, None)),
        ("minute=1d,hour=1d,day=1d", Retention(DAY, DAY, DAY)),
        ("minute=90m,hour=36h,day=400d", Retention(90 * 60, 36 * HOUR, 400 * DAY)),
        ("minute=100s", Retention(100, 90 * DAY, None)),
    ],
)
def test_retention_parse(text: str, expected: Retention) -> None:
    assert Retention.parse(text) == expected
    assert Retention.parse(str(expected)) == expected  # the text form round-trips


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("second=1h", "unknown resolution 'second'"),
        ("minute=2d,minute=3d", "minute given twice"),
        ("minute", "not a duration"),
        ("minute=5x", "not a duration"),
        ("minute=0h", "not a duration"),
        ("minute=forever", "at least as long"),  # hours would be dropped before minutes
        ("minute=2d,hour=1d", "at least as long"),
        ("day=1h", "at least as long"),
        # A bucket kept less than its width is deleted while it fills: the window would read
        # nothing of the last hour (or minute, or day).
        ("minute=30s", "minute buckets must be kept at least one minute"),
        ("minute=10m,hour=10m,day=10m", "hour buckets must be kept at least one hour"),
        ("minute=2h,hour=23h,day=23h", "day buckets must be kept at least one day"),
    ],
)
def test_retention_parse_refuses(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Retention.parse(text)


def test_retention_check_and_cutoffs() -> None:
    with pytest.raises(ValueError, match="at least as long"):
        Retention(minute=None, hour=DAY).check()
    Retention().check()
    now = 1000 * DAY
    assert Retention().cutoffs(now) == {MINUTE: now - 48 * HOUR, HOUR: now - 90 * DAY}
    assert Retention(None, None, None).cutoffs(now) == {}
    assert Retention().horizon(DAY, now) == -math.inf


@given(st.floats(0, 200 * DAY, allow_nan=False), st.floats(0, 100 * YEAR, allow_nan=False))
def test_resolution_at_is_the_finest_still_whole(age: float, now: float) -> None:
    retention = Retention(minute=48 * HOUR, hour=90 * DAY, day=None)
    start = now - age
    chosen = retention.resolution_at(start, now)
    # Every bucket of the chosen resolution from start's own bucket on is still kept...
    assert start // chosen * chosen >= now - (retention.of(chosen) or math.inf)
    # ...and every finer resolution has lost the bucket holding start.
    for finer in (r for r in RESOLUTIONS if r < chosen):
        assert start // finer * finer < now - (retention.of(finer) or math.inf)


@pytest.mark.parametrize(
    ("age", "resolution"),
    [(0, MINUTE), (47 * HOUR, MINUTE), (49 * HOUR, HOUR), (89 * DAY, HOUR), (91 * DAY, DAY)],
)
def test_resolution_at_by_age(age: float, resolution: int) -> None:
    now = 20_000 * DAY + 12345.0
    assert Retention().resolution_at(now - age, now) == resolution
