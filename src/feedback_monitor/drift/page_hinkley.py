"""Page-Hinkley over a stream of errors, on the Bernoulli log-likelihood ratio, fed in blocks.

The Page-Hinkley test sums ``x_t - mean_t - delta`` and alarms when the sum rises ``lambda``
above its lowest point; ``x - mean - delta`` is the log-likelihood ratio of a shift for a
Gaussian stream. Errors are Bernoulli, and at accuracy 0.99 a Gaussian sum with one threshold
for all accuracies is either blind or full of false alarms, so this sums the Bernoulli
log-likelihood ratio instead (Page's CUSUM, of which Page-Hinkley is the Gaussian case): the
hypothesis that the odds of an error grew by ``odds_ratio`` against the error rate since the
last reset up to the sample or block tested, ``p0 = (errors + 0.5) / (n + 1)``. Each sample
adds ``ln(p1 / p0)`` if wrong and ``ln((1 - p1) / (1 - p0))`` if right, so it watches for worse
accuracy only (better accuracy is not an incident).

Blocks: the sum over a block is ``errors * ln(p1/p0) + (n - errors) * ln((1-p1)/(1-p0))``
whatever its order; the running minimum is taken at block ends, which is exact when a block's
errors are spread evenly through it. A block larger than the samples before it (a batch
client's commit to a young series) is taken in parts that double, each no larger than what came
before it: tested whole against a baseline of a few hundred samples, the baseline's own noise,
multiplied by the block, raised false drifts (12% of streams at accuracy 0.99 with 500 samples
and then a commit of 10,000), and the block taken into the baseline first hid real drops.
``statistic`` is the sum's height above its minimum, in nats: ``threshold`` or more is a
drift, ``warning_fraction * threshold`` or more a warning.

Defaults: ``odds_ratio`` 2.25 is 0.90 to 0.80 accuracy. ``threshold`` was swept (9, 10, 11,
12 nats) on seeded stationary Bernoulli streams, 30 fresh streams of 20,000 samples at each
accuracy 0.6, 0.8, 0.9, 0.95 and 0.99 (3,000,000 samples), fed one sample and 32 samples at a
time (``python -m bench.drift_eval --calibrate``): 11 gave 0.07 and 0 false alarms per
100,000 samples (10 gave 0.13 and 0, 9 gave 0.43 and 0.10), a margin of more than ten under
the budget of one. Lorden's bound, at least ``e**threshold`` samples between false alarms for a
known ``p0``, is the theory it approaches. ``bench/drift_eval.py`` checks the budget on other
seeds in every ``make bench``.
"""

from __future__ import annotations

import math
from typing import ClassVar

from feedback_monitor.drift.base import Detector, Status, check_block, classify


class PageHinkley(Detector):
    """Page-Hinkley for a rise in the error rate (1 = wrong), fed one sample or one block.

    Parameters
    ----------
    threshold
        Height of the sum above its minimum, in nats, from which the status is a drift.
    odds_ratio
        Growth of the odds of an error that the test is tuned to detect soonest.
    min_instances
        Samples after a reset that only estimate the error rate before the test starts.
    warning_fraction
        Fraction of ``threshold`` from which the status is a warning.

    Examples
    --------
    >>> detector = PageHinkley()
    >>> for _ in range(50):
    ...     _ = detector.update_many(100, 10)
    >>> detector.drift_detected
    False
    >>> for _ in range(10):
    ...     _ = detector.update_many(100, 30)
    ...     if detector.drift_detected:
    ...         break
    >>> detector.drift_detected, detector.n
    (True, 0)
    """

    PARAMS: ClassVar[tuple[str, ...]] = (
        "threshold",
        "odds_ratio",
        "min_instances",
        "warning_fraction",
    )
    FIELDS: ClassVar[tuple[str, ...]] = ("n", "errors", "height")

    def __init__(
        self,
        threshold: float = 11.0,
        odds_ratio: float = 2.25,
        min_instances: int = 500,
        warning_fraction: float = 0.5,
    ) -> None:
        self.threshold = threshold
        self.odds_ratio = odds_ratio
        self.min_instances = min_instances
        self.warning_fraction = warning_fraction
        self._reset()

    def _reset(self) -> None:
        self.n = 0
        self.errors = 0
        self.height = 0.0

    def update_many(self, n: int, errors: int) -> Status:
        """``n`` more samples, ``errors`` of them wrong, in an unknown order."""
        check_block(n, errors)
        drifted = False
        # A block larger than the samples before it is taken in parts no larger than those
        # (its errors spread evenly): each part is tested against the rate before it, whose
        # noise, multiplied by the part, then weighs no more than the part's own.
        while n:
            part = min(n, max(self.n, self.min_instances))
            share = round(errors * part / n)
            drifted |= self._update(part, share) is Status.DRIFT
            n, errors = n - part, errors - share
        if drifted:  # what came after the drift in the block has started the new estimate
            self.status = Status.DRIFT
        return self.status

    def _update(self, n: int, errors: int) -> Status:
        learning = self.n < self.min_instances
        # Against the error rate before the part: taking the part in would pull the baseline
        # to its own rate and hide the rise it brings.
        ratio = 0.0 if learning else self._log_likelihood_ratio(n, errors)
        self.n += n
        self.errors += errors
        if learning:
            self.status = Status.STABLE
            return self.status
        self.height = max(0.0, self.height + ratio)
        self.statistic = self.height
        self.status = classify(self.height, self.warning_fraction * self.threshold, self.threshold)
        if self.status is Status.DRIFT:
            self._reset()
        return self.status

    def _log_likelihood_ratio(self, n: int, errors: int) -> float:
        p0 = (self.errors + 0.5) / (self.n + 1)
        odds = self.odds_ratio * p0 / (1.0 - p0)
        p1 = odds / (1.0 + odds)
        return errors * math.log(p1 / p0) + (n - errors) * math.log((1.0 - p1) / (1.0 - p0))
