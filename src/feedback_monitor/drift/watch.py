"""The detectors that watch one series, fed the counts of each commit in commit order (pure).

Three watch the errors (``adwin``, ``ddm``, ``page_hinkley``); ``prediction_rate`` tests the share
of positive predictions (prediction drift) and ``prevalence`` the share of positive labels
(label drift), each against a reference window.

>>> watch = SeriesWatch()
>>> watch.observe(Counts(tp=450, tn=450, fp=50, fn=50))
[]
>>> sorted(watch.statuses().items())[:2]
[('adwin', 0), ('ddm', 0)]
"""

from collections.abc import Callable, Mapping
from typing import Any

from feedback_monitor.confusion import Counts
from feedback_monitor.drift.adwin import ADWIN
from feedback_monitor.drift.base import Detector
from feedback_monitor.drift.ddm import DDM
from feedback_monitor.drift.page_hinkley import PageHinkley
from feedback_monitor.drift.proportions import ProportionTest

Stream = Callable[[Counts], int]
"""What a detector counts as a 1 in a block of outcomes."""

_ERRORS: Stream = lambda c: c.fp + c.fn  # noqa: E731 - a table of one-liners
_PREDICTED: Stream = lambda c: c.tp + c.fp  # noqa: E731
_ACTUAL: Stream = lambda c: c.tp + c.fn  # noqa: E731

DETECTORS: Mapping[str, tuple[type[Detector], Stream]] = {
    "adwin": (ADWIN, _ERRORS),
    "ddm": (DDM, _ERRORS),
    "page_hinkley": (PageHinkley, _ERRORS),
    "prediction_rate": (ProportionTest, _PREDICTED),
    "prevalence": (ProportionTest, _ACTUAL),
}


class SeriesWatch:
    """Every detector of one series, and their state as one JSON-serialisable dict."""

    def __init__(self, detectors: Mapping[str, Detector] | None = None) -> None:
        self.detectors = dict(detectors or {name: kind() for name, (kind, _) in DETECTORS.items()})

    def observe(self, counts: Counts) -> list[tuple[str, float]]:
        """Feed one commit's outcomes; the (detector, statistic) of each drift they caused."""
        drifts = []
        for name, detector in self.detectors.items():
            detector.update_many(counts.total, DETECTORS[name][1](counts))
            if detector.drift_detected:
                drifts.append((name, detector.statistic))
        return drifts

    def statuses(self) -> dict[str, int]:
        return {name: int(detector.status) for name, detector in self.detectors.items()}

    def state(self) -> dict[str, Any]:
        return {name: detector.state() for name, detector in self.detectors.items()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "SeriesWatch":
        """The watch ``state()`` described; a detector it lacks (added since) starts afresh."""
        fresh = cls().detectors
        return cls({
            name: DETECTORS[name][0].from_state(state[name]) if name in state else fresh[name]
            for name in DETECTORS
        })  # fmt: skip
