"""Everything committed about one (model, version): its confusion counts, the fate of its
predictions, and how long labels took to arrive. Immutable; the store returns fresh ones.

>>> s = SeriesState(predicted=4, labelled=1, expired=1)
>>> s.pending, s.label_coverage
(2, 0.25)
"""

from dataclasses import dataclass, field
from typing import NamedTuple

from feedback_monitor.confusion import Counts
from feedback_monitor.scores import ScoreHistogram

Series = tuple[str, str]
"""A (model, version) pair."""


class DriftStatus(NamedTuple):
    """One drift detector of a series: its status (0 stable, 1 warning, 2 drift) and how many
    drifts it has found."""

    detector: str
    status: int
    detections: int


# Upper bounds (seconds) of the label-delay histogram: a second to a quarter, then the rest.
DELAY_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86400.0, 7 * 86400.0,
                 30 * 86400.0, 90 * 86400.0)  # fmt: skip


SCORE_BINS = 10
"""Bins of the lifetime score histogram exported to Prometheus: ``le`` 0.1, 0.2, ... 1.0."""


def delay_bucket(seconds: float) -> int:
    """The index of the first bucket whose bound holds ``seconds`` (len(bounds) for +Inf)."""
    for index, bound in enumerate(DELAY_BUCKETS):
        if seconds <= bound:
            return index
    return len(DELAY_BUCKETS)


@dataclass(frozen=True, slots=True)
class SeriesState:
    counts: Counts = field(default_factory=Counts)
    predicted: int = 0  # predictions stored through /predictions
    labelled: int = 0  # of those, joined by a feedback
    expired: int = 0  # of those, dropped unlabelled after the TTL
    delay_sum: float = 0.0
    delays: tuple[int, ...] = field(default=(0,) * (len(DELAY_BUCKETS) + 1))  # per bucket
    scores: ScoreHistogram | None = None  # of every scored outcome, in SCORE_BINS bins
    # Per detector, once the series has outcomes: the detectors' verdict on the counts, left out
    # of equality so that states compare by what was committed.
    drift: tuple[DriftStatus, ...] = field(default=(), compare=False)

    @property
    def pending(self) -> int:
        return self.predicted - self.labelled - self.expired

    @property
    def label_coverage(self) -> float:
        """The labelled share of stored predictions; 0.0 before any."""
        return self.labelled / self.predicted if self.predicted else 0.0
