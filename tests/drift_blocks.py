"""Seeded streams of commits (blocks of Counts) for the tests of the drift detectors as the store
and the service feed them; what a fresh ``SeriesWatch`` finds in such a stream; and what the
drift API should say of the accuracy around each drift, by statsmodels."""

import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint  # type: ignore[import-untyped]

from feedback_monitor.confusion import Counts
from feedback_monitor.drift.watch import SeriesWatch
from feedback_monitor.windows import HOUR, MINUTE
from tests.integration.helpers import CELLS

Mix = tuple[float, float, float, float]
"""The probability of each cell of an outcome: (tp, tn, fp, fn)."""

STEADY: Mix = (0.45, 0.45, 0.05, 0.05)  # accuracy 0.9, prevalence 0.5, positive predictions 0.5
WORSE: Mix = (0.35, 0.35, 0.15, 0.15)  # accuracy 0.7; prevalence and predictions as STEADY
WORST: Mix = (0.25, 0.25, 0.25, 0.25)  # accuracy 0.5; prevalence and predictions as STEADY
FAIR: Mix = (0.4, 0.4, 0.1, 0.1)  # accuracy 0.8, prevalence 0.5, positive predictions 0.5
OVER_PREDICTING: Mix = (0.5, 0.3, 0.2, 0.0)  # accuracy 0.8, prevalence 0.5, predictions 0.7
FEWER_POSITIVES: Mix = (0.27, 0.63, 0.07, 0.03)  # accuracy 0.9, prevalence 0.3, predictions 0.34
ERROR_DETECTORS = frozenset({"adwin", "ddm", "page_hinkley"})


def blocks(segments: Sequence[tuple[Mix, int]], size: int, seed: int) -> list[Counts]:
    """Commits of ``size`` outcomes drawn from each ``(mix, samples)`` segment in turn."""
    rng = np.random.default_rng(seed)
    return [
        Counts(*(int(n) for n in rng.multinomial(size, mix)))
        for mix, samples in segments
        for _ in range(samples // size)
    ]


class Found(NamedTuple):
    """A drift found by ``detector`` in the commit at index ``commit``."""

    commit: int
    detector: str
    statistic: float


def found(watch: SeriesWatch, commits: Sequence[Counts], start: int = 0) -> list[Found]:
    """The drifts ``watch`` finds in the commits, oldest first, indexed from ``start``."""
    return [
        Found(index, *drift)
        for index, counts in enumerate(commits, start)
        for drift in watch.observe(counts)
    ]


def detections(drifts: Sequence[Found]) -> dict[str, int]:
    """How many drifts each detector found."""
    counted: dict[str, int] = {}
    for drift in drifts:
        counted[drift.detector] = counted.get(drift.detector, 0) + 1
    return counted


def batch_of(counts: Counts, series: tuple[str, str]) -> dict[str, Any]:
    """A /feedback/batch body of the outcomes ``counts`` holds."""
    return {
        "items": [
            {"prediction": prediction, "actual": actual, "model": series[0], "version": series[1]}
            for cell, (prediction, actual) in CELLS.items()
            for _ in range(getattr(counts, cell))
        ]
    }


class Batch(NamedTuple):
    """A commit's outcomes, sent and acknowledged (or committed) at known times."""

    counts: Counts
    sent: float  # the commit's time lies between these two
    acked: float


def estimate(counts: Counts) -> dict[str, float]:
    """The accuracy of ``counts`` with statsmodels' Wilson 95% interval."""
    correct, n = counts.tp + counts.tn, counts.total
    if not n:
        return {"value": 0.0, "low": 0.0, "high": 1.0}
    low, high = proportion_confint(correct, n, 0.05, method="wilson")
    return {"value": correct / n, "low": low, "high": high}


def minutes(batch: Batch) -> set[int]:
    """The arrival minute of a batch's outcomes: the one its commit fell in."""
    return {math.floor(t / MINUTE) * MINUTE for t in (batch.sent, batch.acked)}


def around(batches: Sequence[Batch], index: int, at: float, now: float) -> list[dict[str, Any]]:
    """The accuracy before and after a drift found at ``at`` by batch ``index``, by definition:
    the arrival minutes from an hour before ``at`` up to ``at``'s, and from ``at``'s to
    ``now``'s (whole minutes; ``at``'s own counts after). One answer for each minute a batch may
    have landed in."""
    before = (math.floor((at - HOUR) / MINUTE) * MINUTE, math.floor(at / MINUTE) * MINUTE)
    after = (math.floor(at / MINUTE) * MINUTE, math.ceil(min(at + HOUR, now) / MINUTE) * MINUTE)
    choices = [
        {math.floor(at / MINUTE) * MINUTE} if i == index else minutes(b)
        for i, b in enumerate(batches)
    ]
    assert sum(len(c) > 1 for c in choices) <= 3, "the stream crossed too many minutes"
    answers = []
    for placed in itertools.product(*choices):
        windows = {"before": Counts(), "after": Counts()}
        for minute, batch in zip(placed, batches, strict=True):
            for name, (start, end) in (("before", before), ("after", after)):
                if start <= minute < end:
                    windows[name] += batch.counts
        answers.append({
            f"{key}_{name}": value
            for name, counts in windows.items()
            for key, value in (("accuracy", pytest.approx(estimate(counts))), ("n", counts.total))
        })  # fmt: skip
    return answers
