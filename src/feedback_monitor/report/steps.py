"""The step of a report's points: a day, or whole weeks for a period of more days than the API
gives points (``MAX_POINTS``, some thirty years of days).

>>> step(0.0, 365 * DAY), name(DAY), span(DAY)
(86400, 'day', '24 hours')
>>> step(0.0, (MAX_POINTS + 1) * DAY) // DAY, name(WEEK), name(2 * WEEK), span(2 * WEEK)
(7, 'week', '2 weeks', '14 days')
"""

from feedback_monitor.query import MAX_POINTS
from feedback_monitor.windows import DAY, floor

WEEK = 7 * DAY


def step(start: float, end: float) -> int:
    """Seconds of a step over ``[start, end)`` that the API gives points of: a day, or the
    fewest whole weeks. The API rounds the period out to its buckets, a day at most."""
    days = (-floor(-end, DAY) - floor(start, DAY)) // DAY
    if days <= MAX_POINTS:
        return DAY
    return -(-days // (MAX_POINTS * 7)) * WEEK


def name(seconds: int) -> str:
    """What a step is called: day, week, or a number of weeks."""
    if seconds == DAY:
        return "day"
    weeks = seconds // WEEK
    return "week" if weeks == 1 else f"{weeks} weeks"


def span(seconds: int) -> str:
    """A step's length, in the words the report's sentences use."""
    return "24 hours" if seconds == DAY else f"{seconds // DAY} days"
