"""Time buckets: every count is kept per minute, per hour and per day (pure).

A commit adds its outcomes to the minute, the hour and the day that hold their time, so the
coarser buckets are exact rollups of the finer ones from the start, and retention only deletes:
minute buckets go after 48 hours, hour buckets after 90 days, day buckets stay (by default).
A window is read from the finest buckets still kept at its start, its edges snapped to them.

Two clocks, two views: ``arrival`` (when the label was committed) and ``prediction`` (when the
prediction was made, which a late label writes into the past).

>>> slots(3 * 86400 + 3600 + 61.5)
((60, 262860), (3600, 262800), (86400, 259200))
>>> r = Retention.parse("minute=2h,day=365d")
>>> r.minute, r.hour, r.day
(7200.0, 7776000.0, 31536000.0)
>>> r.resolution_at(start=0, now=3600)
60
>>> r.resolution_at(start=0, now=3 * 3600)
3600
"""

import math
import re
from dataclasses import dataclass
from enum import StrEnum

MINUTE, HOUR, DAY = 60, 3600, 86400
LATEST = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second RFC 3339 can write
RESOLUTIONS = (MINUTE, HOUR, DAY)
_NAMES = {"minute": MINUTE, "hour": HOUR, "day": DAY}
_WHOLE_UNITS = (("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", 1))  # largest first
_UNITS = {"s": 1, "m": MINUTE, "h": HOUR, "d": DAY, "w": 7 * DAY}
_DURATION = re.compile(r"([0-9]+)([smhdw])")


class TimeView(StrEnum):
    """Which clock places an outcome in a bucket."""

    ARRIVAL = "arrival"
    PREDICTION = "prediction"


def floor(t: float, resolution: int) -> int:
    """The start of the bucket of ``resolution`` seconds that holds ``t``."""
    return int(t // resolution) * resolution  # not floor(t / resolution): that can underflow


def slots(t: float) -> tuple[tuple[int, int], ...]:
    """The (resolution, start) of the minute, hour and day that hold ``t``."""
    return tuple((resolution, floor(t, resolution)) for resolution in RESOLUTIONS)


def parse_duration(text: str) -> float:
    """``90s``, ``5m``, ``48h``, ``90d`` or ``2w`` in seconds.

    >>> parse_duration("48h")
    172800.0
    """
    match = _DURATION.fullmatch(text.strip())
    # A float: Python will not make an int of more than 4,300 digits, and is exact up to LATEST.
    if match is None or float(match[1]) == 0:
        raise ValueError(f"not a duration: {text!r} (use a positive number and s, m, h, d or w)")
    seconds = float(match[1]) * _UNITS[match[2]]
    if seconds > LATEST:  # longer than the calendar: no time, bucket or row could hold it
        raise ValueError(f"too long a duration: {text!r} (at most {LATEST} s)")
    return seconds


@dataclass(frozen=True)
class Retention:
    """How long each resolution's buckets are kept, in seconds; ``None`` is forever."""

    minute: float | None = 48.0 * HOUR
    hour: float | None = 90.0 * DAY
    day: float | None = None

    @classmethod
    def parse(cls, text: str) -> "Retention":
        """``minute=48h,hour=90d,day=forever``; a resolution not named keeps its default."""
        kept: dict[str, float | None] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, value = (text.strip() for text in part.partition("="))
            if name not in _NAMES:
                raise ValueError(f"unknown resolution {name!r} (minute, hour or day)")
            if name in kept:  # which one was meant?
                raise ValueError(f"{name} given twice")
            kept[name] = None if value == "forever" else parse_duration(value)
        retention = cls(**kept)
        retention.check()
        return retention

    def check(self) -> None:
        """A coarser resolution is kept at least as long as a finer one, so none has holes; and
        each at least as long as its bucket, whose own is otherwise deleted while it fills."""
        spans = [math.inf if s is None else s for s in (self.minute, self.hour, self.day)]
        if spans != sorted(spans):
            raise ValueError("each resolution must be kept at least as long as a finer one")
        for name, kept, width in zip(_NAMES, spans, RESOLUTIONS, strict=True):
            if kept < width:
                raise ValueError(f"{name} buckets must be kept at least one {name}")

    def of(self, resolution: int) -> float | None:
        return {MINUTE: self.minute, HOUR: self.hour, DAY: self.day}[resolution]

    def horizon(self, resolution: int, now: float) -> float:
        """The oldest time whose buckets of ``resolution`` are still all kept."""
        kept = self.of(resolution)
        return -math.inf if kept is None else now - kept

    def cutoffs(self, now: float) -> dict[int, float]:
        """Per resolution, delete buckets starting before this (resolutions kept forever are
        absent)."""
        return {r: now - kept for r in RESOLUTIONS if (kept := self.of(r)) is not None}

    def resolution_at(self, start: float, now: float) -> int:
        """The finest resolution whose buckets are all still kept from ``start`` on."""
        for resolution in RESOLUTIONS:
            if floor(start, resolution) >= self.horizon(resolution, now):
                return resolution
        return DAY

    def covering(self, start: float, end: float, now: float) -> "Span":
        """``[start, end)`` in the finest buckets still all kept from its start on."""
        return Span.covering(start, end, self.resolution_at(start, now))

    def __str__(self) -> str:
        """The form ``parse`` reads, each duration in the largest unit it is a whole number of.

        >>> str(Retention())
        'minute=2d,hour=90d,day=forever'
        """

        def text(kept: float | None) -> str:
            if kept is None:
                return "forever"
            # parse takes whole numbers only: seconds at least divide it
            unit, size = next((u, z) for u, z in _WHOLE_UNITS if kept % z == 0)
            return f"{int(kept // size)}{unit}"

        return f"minute={text(self.minute)},hour={text(self.hour)},day={text(self.day)}"


@dataclass(frozen=True)
class Span:
    """A window ``[start, end)`` in whole buckets of ``resolution`` seconds."""

    start: int
    end: int
    resolution: int

    @classmethod
    def covering(cls, start: float, end: float, resolution: int) -> "Span":
        """The buckets that hold ``[start, end)``: edges snapped outwards."""
        return cls(floor(start, resolution), -floor(-end, resolution), resolution)


def spans(start: int, end: int, resolution: int) -> list[Span]:
    """``[start, end)``, multiples of ``resolution``, as the fewest buckets: the coarsest
    that fit in the middle, finer ones at the edges.

    >>> [(s.start, s.end, s.resolution) for s in spans(3540, 7320, MINUTE)]
    [(3540, 3600, 60), (3600, 7200, 3600), (7200, 7320, 60)]
    """
    coarser = [r for r in RESOLUTIONS if r > resolution]
    if coarser:
        inner_start, inner_end = -floor(-start, coarser[0]), floor(end, coarser[0])
        if inner_start < inner_end:
            edges = (Span(start, inner_start, resolution), Span(inner_end, end, resolution))
            middle = spans(inner_start, inner_end, coarser[0])
            return [s for s in (edges[0], *middle, edges[1]) if s.start < s.end]
    return [Span(start, end, resolution)] if start < end else []
