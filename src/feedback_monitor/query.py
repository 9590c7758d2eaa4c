"""The read API's windows: query parameters checked, then the answers built from the store.

Times are RFC 3339 (with a zone) or Unix seconds; durations are ``90s``, ``5m``, ``1h``, ``7d``.
"""

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from feedback_monitor.confusion import Costs, Counts
from feedback_monitor.errors import ClientError
from feedback_monitor.records import NAME_PATTERN, VERSION_PATTERN, parse_time
from feedback_monitor.schemas import (
    CountsBody,
    DetectorStatus,
    DriftAnswer,
    DriftEventAnswer,
    Estimate,
    PointAnswer,
    ReliabilityBin,
    ScoreMetrics,
    SeriesAnswer,
    WindowAnswer,
    WindowMetrics,
)
from feedback_monitor.scores import ScoreHistogram
from feedback_monitor.series import Series, SeriesState
from feedback_monitor.store import DriftEvent, Point, Window
from feedback_monitor.windows import (
    LATEST,
    Retention,
    Span,
    TimeView,
    floor,
    parse_duration,
    spans,
)

DEFAULT_WINDOW = "1h"
DEFAULT_POINTS = 60  # points a series gets when no step is asked for
MAX_POINTS = 11_000  # as Prometheus: a chart has no use for more
DEFAULT_EVENTS, MAX_EVENTS = 20, 100
EVENT_CONTEXT = 3600.0  # seconds of accuracy shown before and after a drift
_MODEL, _VERSION = re.compile(NAME_PATTERN), re.compile(VERSION_PATTERN)
# ASCII, no _ nor nan; each digit has one place to go, so a long run of them that fails at
# its end fails in linear time (``[0-9]+\.?[0-9]*`` backtracked quadratically: 99 s at 60 KB).
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
MAX_VALUE = 100  # characters of a parameter's value: a time, a duration or a name needs fewer


class BadParameter(ClientError):
    """A query parameter (or the path's model) that cannot be used; the message names it."""

    def __init__(self, name: str, problem: str, where: str = "query") -> None:
        shown = name if len(name) <= MAX_VALUE else name[:MAX_VALUE] + "..."
        super().__init__(400, f"Invalid {where} parameter {shown!r}: {problem}", "bad_parameter")


class UnknownSeries(ClientError):
    def __init__(self) -> None:
        super().__init__(404, "Unknown model or version", "unknown_series")


@dataclass(frozen=True)
class Query:
    """A checked request for a window (``step`` 0) or for points of ``step`` seconds."""

    series: Series
    view: TimeView
    span: Span
    step: int = 0


def series_of(model: str, params: Mapping[str, str]) -> Series:
    if not _MODEL.match(model):
        raise BadParameter("model", "names are 1 to 64 of A-Z a-z 0-9 _ . : -", "path")
    version = params.get("version", "")
    if not _VERSION.match(version):
        raise BadParameter("version", "versions are 0 to 64 of A-Z a-z 0-9 _ . : -")
    return (model, version)


def _only(params: Mapping[str, str], allowed: set[str]) -> None:
    """Refuse a parameter the endpoint does not take, and a value too long to be one (which
    the answer and the log would otherwise echo whole)."""
    for name, value in params.items():
        if name not in allowed:
            takes = ", ".join(sorted(allowed)) or "none"
            raise BadParameter(name, f"unknown; this endpoint takes {takes}")
        if len(value) > MAX_VALUE:
            raise BadParameter(name, f"longer than {MAX_VALUE} characters")


def no_parameters(params: Mapping[str, str]) -> None:
    """Refuse any query parameter, for an endpoint that takes none."""
    _only(params, set())


def _view(params: Mapping[str, str]) -> TimeView:
    try:
        return TimeView(params.get("time", TimeView.ARRIVAL))
    except ValueError:
        raise BadParameter("time", "arrival or prediction") from None


def _moment(params: Mapping[str, str], name: str, default: float) -> float:
    text = params.get(name)
    if text is None:
        return default
    seconds = float(text) if _NUMBER.fullmatch(text) else _rfc3339(name, text)
    if not math.isfinite(seconds) or not 0 <= seconds <= LATEST:
        raise BadParameter(name, f"Unix seconds must be a number from 0 to {LATEST} (year 9999)")
    return seconds


def _rfc3339(name: str, text: str) -> float:
    try:
        moment = parse_time(text)
    except ValueError:
        raise BadParameter(name, "not RFC 3339 nor Unix seconds") from None
    if moment.tzinfo is None:
        raise BadParameter(name, "an RFC 3339 time needs its zone, such as Z or +02:00")
    return moment.timestamp()


def _duration(params: Mapping[str, str], name: str, default: str) -> float:
    try:
        return parse_duration(params.get(name, default))
    except ValueError as error:
        raise BadParameter(name, str(error)) from None


def _range(params: Mapping[str, str], now: float, default: str) -> tuple[float, float]:
    """From start, or from ``window`` before end, to end (now by default). A window with a
    start is ambiguous (does it end after the window, or at end?): refused."""
    if "window" in params and "start" in params:
        raise BadParameter("window", "give either window or start, not both; end goes with either")
    end = _moment(params, "end", now)
    # A window reaching back past 1970 holds all there is: it starts there.
    start = _moment(params, "start", max(0.0, end - _duration(params, "window", default)))
    if end <= start:
        raise BadParameter("end", "must be after start")
    return start, end


def window_query(model: str, params: Mapping[str, str], now: float, retention: Retention) -> Query:
    """``?version=&window=1h&end=&time=arrival`` (``end`` now by default), or ``?start=``
    instead of ``window``."""
    query, _ = _query(model, params, now, retention, {"version", "window", "start", "end", "time"})
    return query


def points_query(model: str, params: Mapping[str, str], now: float, retention: Retention) -> Query:
    """``?version=&window=1h&end=&step=&time=`` or ``?start=`` instead of ``window``; an hour
    to now by default."""
    allowed = {"version", "window", "start", "end", "step", "time"}
    query, asked = _query(model, params, now, retention, allowed)
    span = query.span
    step = _step(params, span, asked)
    if (span.end - span.start) / step > MAX_POINTS:
        raise BadParameter("step", f"more than {MAX_POINTS} points; ask for a longer step")
    return dataclasses.replace(query, step=step)


def _query(
    model: str, params: Mapping[str, str], now: float, retention: Retention, allowed: set[str]
) -> tuple[Query, float]:
    """The query, and the seconds of the range asked for (its span is snapped outwards)."""
    _only(params, allowed)
    series, view = series_of(model, params), _view(params)
    start, end = _range(params, now, DEFAULT_WINDOW)
    return Query(series, view, retention.covering(start, end, now)), end - start


def _step(params: Mapping[str, str], span: Span, asked: float) -> int:
    """The step asked for, or one that gives about ``DEFAULT_POINTS`` over the range ``asked``
    (not over the span, whose edges are snapped outwards to whole buckets)."""
    resolution = span.resolution
    if "step" not in params:
        wanted = asked / DEFAULT_POINTS
        return max(resolution, math.ceil(wanted / resolution) * resolution)
    text = params["step"]
    # Digits as a float: Python will not make an int of more than 4,300 digits.
    step = float(text) if _digits(text) else _duration(params, "step", "")
    if step <= 0 or step > LATEST or step % resolution:
        raise BadParameter(
            "step",
            f"must be a multiple of {resolution} s, the finest buckets kept at start, and at most"
            f" {LATEST} s",
        )
    return int(step)


def window_answer(query: Query, window: Window, costs: Costs | None) -> WindowAnswer:
    counts, span = window.counts, query.span
    return WindowAnswer(
        *query.series,
        query.view.value,
        span.start,
        span.end,
        span.resolution,
        counts.total,
        CountsBody(*counts.fields),
        WindowMetrics.of(counts),
        None if costs is None else counts.cost(costs),
        None if window.scores is None else score_metrics(window.scores),
    )


def score_metrics(scores: ScoreHistogram) -> ScoreMetrics:
    return ScoreMetrics(
        scores.total,
        scores.roc_auc(),
        scores.roc_auc_error(),
        scores.average_precision(),
        scores.average_precision_error(),
        scores.log_loss(),
        scores.brier(),
        scores.expected_calibration_error(),
        [
            ReliabilityBin(r.low, r.high, r.count, r.mean_score, r.observed_rate)
            for r in scores.reliability()
        ],
    )


def series_answer(query: Query, points: list[Point]) -> SeriesAnswer:
    return SeriesAnswer(
        *query.series,
        query.view.value,
        query.span.start,
        query.span.end,
        query.step,
        [_point(start, counts) for start, counts in points],
    )


def _point(start: int, counts: Counts) -> PointAnswer:
    return PointAnswer(start, counts.total, CountsBody(*counts.fields), WindowMetrics.of(counts))


def drift_query(model: str, params: Mapping[str, str]) -> tuple[Series, int]:
    """``?version=&limit=``: the series, and how many of its latest events."""
    _only(params, {"version", "limit"})
    text = params.get("limit", str(DEFAULT_EVENTS))
    if not _digits(text) or not 1 <= float(text) <= MAX_EVENTS:
        raise BadParameter("limit", f"a whole number from 1 to {MAX_EVENTS}")
    return series_of(model, params), int(float(text))


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def drift_spans(at: float, now: float, retention: Retention) -> tuple[list[Span], list[Span]]:
    """The buckets of the hour before a drift and of the hour after it, up to now. The bucket
    that holds the drift counts after it (it holds the outcomes that revealed it), never on both
    sides: each window's edges are whole buckets, and snapped outwards both would share it.
    Where only days are kept, the hour before lies in the drift's own day: the day before it
    stands in for it."""
    before = retention.covering(at - EVENT_CONTEXT, at, now)
    cut = floor(at, before.resolution)
    start = min(before.start, cut - before.resolution)
    after = retention.covering(cut, max(at, min(at + EVENT_CONTEXT, now)), now)
    return spans(start, cut, before.resolution), spans(*dataclasses.astuple(after))


def drift_answer(
    series: Series,
    state: SeriesState,
    events: list[tuple[DriftEvent, Counts, Counts]],
) -> DriftAnswer:
    """The detectors' statuses, and each event with the accuracy around it."""
    detectors = [DetectorStatus(*detector) for detector in state.drift]
    return DriftAnswer(*series, detectors, [_event(*event) for event in events])


def _event(event: DriftEvent, before: Counts, after: Counts) -> DriftEventAnswer:
    return DriftEventAnswer(
        event.at,
        event.detector,
        event.statistic,
        _accuracy(before),
        before.total,
        _accuracy(after),
        after.total,
    )


def _accuracy(counts: Counts) -> Estimate:
    return Estimate(counts.accuracy, *counts.intervals()["accuracy"])


def window_spans(query: Query) -> list[Span]:
    """The fewest buckets that make up the query's span."""
    return spans(query.span.start, query.span.end, query.span.resolution)
