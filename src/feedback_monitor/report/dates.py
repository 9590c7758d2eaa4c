"""The period of a report from ``--since`` and ``--until``: RFC 3339 dates or date-times.

A date is a whole UTC day: ``--since`` starts at its midnight and ``--until`` ends at the next
one, so ``--since 2024-05-01 --until 2024-05-31`` is all of May.

>>> period("2024-05-01", "2024-05-31", now=0.0)
(1714521600.0, 1717200000.0)
>>> period(None, "2024-05-31T12:00:00+02:00", now=0.0)
(1714521600.0, 1717149600.0)
"""

import re
from datetime import UTC, date, datetime, timedelta

from feedback_monitor.records import parse_time
from feedback_monitor.report.errors import BadFlag
from feedback_monitor.windows import DAY, floor

DEFAULT_DAYS = 30
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def period(since: str | None, until: str | None, now: float) -> tuple[float, float]:
    """``[since, until)`` in Unix seconds; ``until`` is now by default, and ``since`` the start
    of the UTC day ``DEFAULT_DAYS`` days before it, so that each day of the report is whole."""
    end = now if until is None else moment("--until", until, end_of_day=True)
    start = floor(end - DEFAULT_DAYS * DAY, DAY) if since is None else moment("--since", since)
    if end <= start:
        raise BadFlag(
            f"the period is empty: it starts at {_text(start)} (--since {since or 'default'})"
            f" and ends at {_text(end)} (--until {until or 'now'})"
        )
    return float(start), end


def moment(flag: str, text: str, end_of_day: bool = False) -> float:
    """Unix seconds of an RFC 3339 date (its midnight UTC, or the next) or date-time."""
    if _DATE.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise BadFlag(f"{flag}: not a date: {text!r}") from None
        if end_of_day and day == date.max:
            raise BadFlag(f"{flag}: {text!r} ends past the year 9999")
        day += timedelta(days=end_of_day)
        return _since_1970(flag, text, datetime(day.year, day.month, day.day, tzinfo=UTC))
    try:
        value = parse_time(text)
    except ValueError:
        raise BadFlag(
            f"{flag}: not an RFC 3339 date or date-time: {text!r} "
            "(such as 2024-05-01 or 2024-05-01T12:00:00Z)"
        ) from None
    if value.tzinfo is None:
        raise BadFlag(f"{flag}: {text!r} needs its time zone, such as Z or +02:00")
    return _since_1970(flag, text, value)


def _since_1970(flag: str, text: str, value: datetime) -> float:
    """Unix seconds of a time the service can be asked for: none before 1970."""
    seconds = value.timestamp()
    if seconds < 0:
        raise BadFlag(f"{flag}: {text!r} is before 1970-01-01, where the service's time begins")
    return seconds


def _text(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()
