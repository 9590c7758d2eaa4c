"""How the HTML and Markdown formats write numbers and times (the JSON format keeps them raw).

>>> ratio(0.833333), ratio(None), count(12345)
('0.8333', '-', '12,345')
>>> estimate(Estimate(0.75, 0.4676, 0.9111))
'0.7500 (0.4676, 0.9111)'
>>> moment(1714521600.0), day(1714521600.0), day(1714525200.0)
('2024-05-01 00:00:00 UTC', '2024-05-01', '2024-05-01 01:00 UTC')
"""

from datetime import UTC, datetime

from feedback_monitor.schemas import Estimate
from feedback_monitor.windows import DAY

DIGITS = 4
NONE = "-"


def ratio(value: float | None) -> str:
    """A metric to ``DIGITS`` decimals; an undefined one as a dash."""
    return NONE if value is None else f"{value:.{DIGITS}f}"


def estimate(value: Estimate) -> str:
    """A metric and its 95% interval, where it has one."""
    if value.low is None or value.high is None:
        return ratio(value.value)
    return f"{ratio(value.value)} ({ratio(value.low)}, {ratio(value.high)})"


def binned(value: float | None, error: float | None) -> str:
    """A ranking metric of binned scores, and the most it can be off its value on raw ones."""
    return ratio(value) if error is None else f"{ratio(value)} (± {ratio(error)})"


def count(value: int) -> str:
    return f"{value:,}"


def amount(value: float | None) -> str:
    """A cost matrix's total: two decimals, a dash without a cost matrix."""
    return NONE if value is None else f"{value:,.2f}"


def moment(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def day(seconds: float) -> str:
    """A step's start: its date when it starts a UTC day, else its date and time."""
    if seconds % DAY == 0:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d")
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")
