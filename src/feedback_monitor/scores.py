"""Score metrics from fixed histograms of the score per actual class (pure).

Memory is O(bins), never O(samples): ``bins`` equal-width bins over [0, 1] (100 by default); bin
``i`` holds ``i/bins < score <= (i+1)/bins`` and the first bin also holds 0.0, so the bins are
Prometheus' ``le`` buckets (scikit-learn's ``calibration_curve`` bins, but at the few edges where
``numpy.linspace`` rounds differently, such as 0.30000000000000004 for 0.3). Per actual class
(0, 1) a histogram keeps the count and the sum of scores of each bin; over all samples it keeps
the exact sums of log loss and of squared error. Everything is a sum, so histograms of time
buckets add up (``+``) to the histogram of their window.

>>> h = ScoreHistogram.of([(0.1, 0), (0.4, 0), (0.35, 1), (0.8, 1)])
>>> h.roc_auc(), h.average_precision(), round(h.brier(), 4)
(0.75, 0.8333333333333333, 0.1581)
>>> h.reliability()[1]
ReliabilityRow(low=0.3, high=0.4, count=2, mean_score=0.375, observed_rate=0.5)
>>> ScoreHistogram.from_row(h.to_row()) == h
True

Ranking metrics see scores at bin resolution: they equal scikit-learn's on scores quantised to the
bins, ties within a bin counted the way scikit-learn counts tied scores. On raw scores only pairs
sharing a bin can differ, so with ``P_i`` positives and ``N_i`` negatives in bin ``i``:

- ROC AUC is within ``sum(P_i * N_i) / (2 * P * N)`` of the exact value;
- average precision is within ``sum(P_i * (U_i - L_i)) / P``, where ``U_i`` and ``L_i`` bound the
  precision at any threshold inside bin ``i``: ``T_i / (T_i + F_above_i)`` and
  ``(T_above_i + 1) / (T_above_i + 1 + F_i)``, with ``T``/``F`` the positives/negatives at or
  above bin ``i`` (``_above``: strictly above).

The API gives both bounds beside their metric (``roc_auc_error``, ``average_precision_error``):
they are largest where most scores crowd into a few bins, as a rare-event model's negatives do
near 0.

Log loss and Brier score are exact (log loss clips probabilities to [eps, 1 - eps] with eps the
float64 machine epsilon, as scikit-learn 1.9 does).

A metric that is undefined gives None, never a made-up number: every metric on no samples (and no
reliability rows); ROC AUC when either class is absent (scikit-learn warns and gives NaN); average
precision when no positive is present (scikit-learn warns and gives 0.0). With positives alone,
average precision is 1.0, as scikit-learn's; log loss and Brier score need no second class.

Storage row (``to_row``/``from_row``), a flat sequence of ``4 * bins + 2`` plain numbers: the
counts of class 0 per bin, the counts of class 1 per bin, the score sums of class 0 per bin, the
score sums of class 1 per bin, the log loss sum, the squared error sum.
"""

import bisect
import functools
import itertools
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_EPS = sys.float_info.epsilon
_IntsByClass = tuple[tuple[int, ...], tuple[int, ...]]
_FloatsByClass = tuple[tuple[float, ...], tuple[float, ...]]


@functools.cache
def _edges(bins: int) -> tuple[float, ...]:
    # i / bins is correctly rounded, so an edge is in its bin; ceil(score * bins) misplaces 0.07.
    return tuple(i / bins for i in range(bins + 1))


def _bin(score: float, bins: int) -> int:
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"score {score!r} is not within [0, 1]")
    return max(bisect.bisect_left(_edges(bins), score) - 1, 0)


def _log_likelihood(score: float, actual: int) -> float:
    """The log of the probability given to the actual class, clipped as scikit-learn clips it."""
    return math.log(min(max(score if actual else 1.0 - score, _EPS), 1.0 - _EPS))


@dataclass(frozen=True, slots=True)
class ReliabilityRow:
    """One calibration bin: its score range, sample count, mean score and observed positive rate."""

    low: float
    high: float
    count: int
    mean_score: float
    observed_rate: float


@dataclass(frozen=True, slots=True)
class ScoreHistogram:
    """Counts and score sums per bin for each actual class, and exact loss sums; immutable."""

    counts: _IntsByClass  # counts[actual][bin]
    score_sums: _FloatsByClass  # score_sums[actual][bin]
    log_loss_sum: float
    squared_error_sum: float

    @classmethod
    def of(cls, scored: Iterable[tuple[float, int]], bins: int = 100) -> "ScoreHistogram":
        """The histogram of (score, actual) pairs; no pair gives an empty histogram."""
        counts, sums = ([0] * bins, [0] * bins), ([0.0] * bins, [0.0] * bins)
        log_loss = squared_error = 0.0
        for score, actual in scored:
            i = _bin(score, bins)
            counts[actual][i] += 1
            sums[actual][i] += score
            log_loss -= _log_likelihood(score, actual)
            squared_error += (score - actual) ** 2
        return cls(
            (tuple(counts[0]), tuple(counts[1])),
            (tuple(sums[0]), tuple(sums[1])),
            log_loss,
            squared_error,
        )

    @classmethod
    def combined(cls, histograms: Iterable["ScoreHistogram"], bins: int = 100) -> "ScoreHistogram":
        """The sum of histograms of equal bins, column by column (a window of time buckets)."""
        rows = [histogram.to_row() for histogram in histograms]
        if not rows:
            return cls.of((), bins)
        if len({len(row) for row in rows}) > 1:
            raise ValueError("histograms of different bins do not add up")
        return cls.from_row([sum(column) for column in zip(*rows, strict=True)])

    @classmethod
    def from_row(cls, row: Sequence[float]) -> "ScoreHistogram":
        """The histogram stored as ``row`` (the format of ``to_row``)."""
        bins, remainder = divmod(len(row) - 2, 4)
        if remainder or bins < 1:
            raise ValueError(f"a row of {len(row)} numbers is not a score histogram")
        parts = [row[start : start + bins] for start in range(0, 4 * bins, bins)]
        counts = (tuple(map(int, parts[0])), tuple(map(int, parts[1])))
        sums = (tuple(map(float, parts[2])), tuple(map(float, parts[3])))
        return cls(counts, sums, float(row[-2]), float(row[-1]))

    def to_row(self) -> list[float]:
        """This histogram as a flat list of ints and floats, for storage."""
        sums = (self.log_loss_sum, self.squared_error_sum)
        return [*self.counts[0], *self.counts[1], *self.score_sums[0], *self.score_sums[1], *sums]

    @property
    def bins(self) -> int:
        return len(self.counts[0])

    @property
    def total(self) -> int:
        return sum(self.counts[0]) + sum(self.counts[1])

    def add(self, score: float, actual: int) -> "ScoreHistogram":
        """This histogram with one more scored outcome."""
        return self + ScoreHistogram.of([(score, actual)], self.bins)

    def __add__(self, other: "ScoreHistogram") -> "ScoreHistogram":
        return ScoreHistogram.combined([self, other])

    def roc_auc(self) -> float | None:
        """Area under the ROC curve: the chance a positive outranks a negative, ties half."""
        negatives, positives = self.counts[0][::-1], self.counts[1][::-1]  # highest bin first
        pairs = sum(self.counts[0]) * sum(self.counts[1])
        if not pairs:
            return None
        # Twice the positives each negative loses to: all those above its bin, half those in it.
        above_twice = (
            n * (2 * tp - p)
            for n, p, tp in zip(negatives, positives, itertools.accumulate(positives), strict=True)
        )
        return sum(above_twice) / (2 * pairs)

    def average_precision(self) -> float | None:
        """Average precision: precision at each bin threshold, weighted by the recall it adds."""
        negatives, positives = self.counts[0][::-1], self.counts[1][::-1]  # highest bin first
        tps, fps = itertools.accumulate(positives), itertools.accumulate(negatives)
        weighted = sum(
            p * tp / (tp + fp) for p, tp, fp in zip(positives, tps, fps, strict=True) if p
        )
        return _mean(weighted, sum(positives))

    def roc_auc_error(self) -> float | None:
        """The most ``roc_auc`` can be off its value on the raw scores: half the share of the
        pairs whose positive and negative share a bin (their order is lost)."""
        pairs = sum(self.counts[0]) * sum(self.counts[1])
        if not pairs:
            return None
        return sum(n * p for n, p in zip(*self.counts, strict=True)) / (2 * pairs)

    def average_precision_error(self) -> float | None:
        """The most ``average_precision`` can be off its value on the raw scores: in each bin,
        the spread of the precision at thresholds inside it, weighted by its positives."""
        negatives, positives = self.counts[0][::-1], self.counts[1][::-1]  # highest bin first
        total = sum(positives)
        if not total:
            return None
        spread, tp_above, fp_above = 0.0, 0, 0
        for n, p in zip(negatives, positives, strict=True):
            tp, fp = tp_above + p, fp_above + n
            if p:
                spread += p * (tp / (tp + fp_above) - (tp_above + 1) / (tp_above + 1 + fp))
            tp_above, fp_above = tp, fp
        return spread / total

    def log_loss(self) -> float | None:
        return _mean(self.log_loss_sum, self.total)

    def brier(self) -> float | None:
        return _mean(self.squared_error_sum, self.total)

    def reliability(self, calibration_bins: int = 10) -> list[ReliabilityRow]:
        """Mean score against observed positive rate in each non-empty calibration bin.

        Calibration bins merge neighbouring fine bins (10 of 100 by default): fewer, fuller bins
        estimate a rate with less noise, and the true mean score of each bin is kept.
        """
        width, remainder = divmod(self.bins, calibration_bins)
        if remainder:
            raise ValueError(f"{calibration_bins} calibration bins do not divide {self.bins} bins")
        rows = []
        for b in range(calibration_bins):
            part = slice(b * width, (b + 1) * width)
            negatives, positives = sum(self.counts[0][part]), sum(self.counts[1][part])
            scores = sum(self.score_sums[0][part]) + sum(self.score_sums[1][part])
            if count := negatives + positives:
                low, high = b / calibration_bins, (b + 1) / calibration_bins
                rows.append(ReliabilityRow(low, high, count, scores / count, positives / count))
        return rows

    def expected_calibration_error(self, calibration_bins: int = 10) -> float | None:
        """Mean of |mean score - observed rate| over the calibration bins, weighted by count."""
        gaps = (
            r.count * abs(r.mean_score - r.observed_rate)
            for r in self.reliability(calibration_bins)
        )
        return _mean(sum(gaps), self.total)


def _mean(total: float, n: int) -> float | None:
    return total / n if n else None
