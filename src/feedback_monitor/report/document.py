"""What a report holds: the service's own answers for one series and period, kept as read.

The JSON format is this document encoded; the HTML and Markdown formats render it, so the
three carry the same numbers, and those are the API's.
"""

from typing import Any

import msgspec

from feedback_monitor.schemas import (
    DetectorStatus,
    DriftEventAnswer,
    PointAnswer,
    PredictionStats,
    WindowAnswer,
)

DAY_STEP = 86400


class Drift(msgspec.Struct):
    """The detectors' statuses now, and the drift events found in the period, newest first.

    ``complete`` is false when the service's latest events (at most its limit) do not reach
    back to the period's start: older events in the period may be missing.
    """

    detectors: list[DetectorStatus]
    events: list[DriftEventAnswer]
    complete: bool


class Report(msgspec.Struct):
    """An audit report of one series over ``[summary.start, summary.end)``.

    ``summary`` is the whole period, ``days`` its points of ``step`` seconds from the period's
    start (steps without feedback absent): a day (``DAY_STEP``), or whole weeks for a period
    of more days than the API gives points. ``predictions`` are the series' predictions since
    it began, and ``config`` the settings in force.
    """

    generated: float
    service: str
    model: str
    version: str
    time: str
    summary: WindowAnswer
    days: list[PointAnswer]
    predictions: PredictionStats
    drift: Drift
    config: dict[str, Any]
    step: int = DAY_STEP


def to_json(report: Report) -> str:
    """The report as indented JSON."""
    return msgspec.json.format(msgspec.json.encode(report).decode(), indent=2) + "\n"
