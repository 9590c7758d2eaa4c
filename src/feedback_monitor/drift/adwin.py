"""ADWIN, adaptive windowing (Bifet and Gavaldà, 2007), over a stream of errors fed in blocks.

The window is an exponential histogram of buckets ``[samples, errors]``: each block enters as
one bucket, and when a level holds more than ``max_buckets`` its two oldest merge into the next
level, so the window of ``W`` samples keeps ``O(log W)`` buckets. Every ``clock`` samples the
window is tested at each bucket boundary: the older and newer parts differ when their error
rates differ by at least

    eps = sqrt(2 / m * var * L) + 2 / (3 m) * L,    L = ln(2 ln W / delta),

where ``1/m = 1/n0 + 1/n1`` and ``var = p (1 - p)`` is the Bernoulli variance of the whole
window. On a drift the window keeps only what follows the boundary where the two parts differ
most: it forgets the old regime at once, rather than by one bucket at a time as in the paper,
so one change raises one alarm. Within a block the order is unknown, so cuts fall only between
blocks; an update costs ``O(log W)`` whatever the block's size.

``statistic`` is the largest ``|mean0 - mean1| / eps`` over the boundaries at the last test:
1 or more is a drift, ``warning_ratio`` or more a warning. Both directions count as drift.

Default ``delta``: swept from river's 0.002 upwards (0.002, 0.005, 0.01, 0.02) on seeded
stationary Bernoulli streams, 30 fresh streams of 20,000 samples at each accuracy 0.6, 0.8,
0.9, 0.95 and 0.99 (3,000,000 samples), fed one sample and 32 samples at a time
(``python -m bench.drift_eval --calibrate``). 0.01 is the largest with no false alarm there
(0.02 gave 0.4 per 100,000); it cuts the median delay on a drop 0.90 to 0.80 from 312 to 248
samples. ``bench/drift_eval.py`` checks the budget of one per 100,000 on other seeds in every
``make bench``.
"""

from __future__ import annotations

import math
from typing import ClassVar

from feedback_monitor.drift.base import Detector, Status, check_block

Bucket = list[int]  # [samples, errors]; a list, not a tuple, so state() survives JSON


class ADWIN(Detector):
    """ADWIN over errors (1 = wrong), fed one sample or one block at a time.

    Parameters
    ----------
    delta
        Confidence of the cut test; smaller means fewer false alarms and later detections.
    clock
        Samples between two tests of the window.
    max_buckets
        Buckets kept per level of the exponential histogram.
    min_window
        Samples each side of a cut must hold at least.
    warning_ratio
        ``statistic`` from which the status is a warning.

    Examples
    --------
    >>> detector = ADWIN()
    >>> for _ in range(50):
    ...     _ = detector.update_many(100, 10)
    >>> detector.width
    5000
    >>> for _ in range(10):
    ...     _ = detector.update_many(100, 30)
    ...     if detector.drift_detected:
    ...         break
    >>> detector.drift_detected, detector.width < 5000
    (True, True)
    """

    PARAMS: ClassVar[tuple[str, ...]] = (
        "delta",
        "clock",
        "max_buckets",
        "min_window",
        "warning_ratio",
    )
    FIELDS: ClassVar[tuple[str, ...]] = ("levels", "width", "errors", "since_test")

    def __init__(
        self,
        delta: float = 0.01,
        clock: int = 32,
        max_buckets: int = 5,
        min_window: int = 32,
        warning_ratio: float = 0.8,
    ) -> None:
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window = min_window
        self.warning_ratio = warning_ratio
        self.levels: list[list[Bucket]] = []  # levels[0] newest; each level oldest first
        self.width = 0
        self.errors = 0
        self.since_test = 0

    @property
    def error_rate(self) -> float:
        """The error rate over the current window."""
        return self.errors / self.width if self.width else 0.0

    def update_many(self, n: int, errors: int) -> Status:
        """``n`` more samples, ``errors`` of them wrong, in an unknown order."""
        check_block(n, errors)
        if n:
            self._insert([n, errors])
        self.since_test += n
        if self.since_test < self.clock:
            self._quiet()
            return self.status
        self.since_test = 0
        return self._test()

    def _insert(self, bucket: Bucket) -> None:
        if not self.levels:
            self.levels.append([])
        self.levels[0].append(bucket)
        self.width += bucket[0]
        self.errors += bucket[1]
        for level in range(len(self.levels)):
            if len(self.levels[level]) > self.max_buckets:
                self._merge_oldest(level)

    def _merge_oldest(self, level: int) -> None:
        first, second = self.levels[level].pop(0), self.levels[level].pop(0)
        if level + 1 == len(self.levels):
            self.levels.append([])
        self.levels[level + 1].append([first[0] + second[0], first[1] + second[1]])

    def _test(self) -> Status:
        self.statistic = self._largest_ratio()
        if self.statistic >= 1.0:
            self._forget_old_regime()
            self.status = Status.DRIFT
        elif self.statistic >= self.warning_ratio:
            self.status = Status.WARNING
        else:
            self.status = Status.STABLE
        return self.status

    def _forget_old_regime(self) -> None:
        """Keep only what follows the boundary where the two parts differ most."""
        keep = self.width - self._best_cut()[1]
        while self.width > keep:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        oldest = self.levels[-1].pop(0)
        self.width -= oldest[0]
        self.errors -= oldest[1]
        while self.levels and not self.levels[-1]:
            self.levels.pop()

    def _largest_ratio(self) -> float:
        if self.width < 2 * self.min_window:
            return 0.0
        return self._best_cut()[0]

    def _best_cut(self) -> tuple[float, int]:
        """The largest ``|mean0 - mean1| / eps`` over the admissible boundaries, and the samples
        of the older part at the first boundary that reaches it; ``(0.0, 0)`` with none. One
        plain loop, the constants of ``eps`` worked out once: a test runs every ``clock``
        samples over every bucket."""
        width, errors, min_window = self.width, self.errors, self.min_window
        if not width:  # no boundary, and no log of an empty window's width
            return 0.0, 0
        p = self.error_rate
        log_term = math.log(2.0 * math.log(width) / self.delta)
        best, at = -1.0, 0  # every ratio is >= 0: the first boundary takes it
        n0 = e0 = 0
        for level in reversed(self.levels):
            for samples, errs in level:
                n0, e0 = n0 + samples, e0 + errs
                if min_window <= n0 <= width - min_window:
                    n1 = width - n0
                    m_recip = 1.0 / n0 + 1.0 / n1
                    epsilon = (
                        math.sqrt(2.0 * m_recip * p * (1.0 - p) * log_term)
                        + 2.0 / 3.0 * m_recip * log_term
                    )
                    ratio = abs(e0 / n0 - (errors - e0) / n1) / epsilon
                    if ratio > best:
                        best, at = ratio, n0
        return max(best, 0.0), at
