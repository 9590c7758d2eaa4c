"""A two-proportion z-test between a reference window and the current one, fed in blocks.

It watches any Bernoulli stream: the positive-prediction rate (prediction drift), the
prevalence of the positive label (label drift), or errors. The first ``reference_size``
samples after a reset are the reference; then each tumbling window of ``window_size`` samples
is compared with it by the pooled two-proportion z statistic

    z = (p_current - p_reference) / sqrt(p (1 - p) (1/n_reference + 1/n_current)),

``p`` the pooled proportion. ``|z| >= threshold`` is a drift, after which the detector learns a
new reference; ``|z| >= warning_threshold`` a warning. ``statistic`` is the last ``z``.

Blocks: only counts enter the test, so a block is exact; a window closes at the first block
end at or past ``window_size`` samples (it may hold a little more), and an update costs O(1).
A block that completes the reference is split, its ones in proportion (as if spread evenly).

Defaults: a reference of 2,000 samples and windows of 500, so 200 tests per 100,000 samples
and a drop is seen within about one window. ``threshold`` was swept (4, 4.5, 5, 5.5) on seeded
stationary Bernoulli streams, 30 fresh streams of 20,000 samples at each proportion 0.4, 0.2,
0.1, 0.05 and 0.01 (3,000,000 samples), fed one sample and 32 samples at a time
(``python -m bench.drift_eval --calibrate``): 4 already gave no false alarm; the default 4.5
keeps a step of margin, as the normal approximation understates the upper tail at
proportions near 0 or 1 and the sweep cannot cover every proportion. ``bench/drift_eval.py``
checks the budget of one per 100,000 on other seeds in every ``make bench``.
"""

from __future__ import annotations

import math
from typing import ClassVar

from feedback_monitor.drift.base import Detector, Status, check_block, classify


def two_proportion_z(successes_a: int, n_a: int, successes_b: int, n_b: int) -> float:
    """The pooled z statistic of ``b``'s proportion against ``a``'s; 0.0 when undefined.

    >>> round(two_proportion_z(100, 1000, 150, 1000), 3)
    3.381
    >>> two_proportion_z(0, 1000, 0, 1000)
    0.0
    """
    pooled = (successes_a + successes_b) / (n_a + n_b) if n_a and n_b else 0.0
    variance = pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b) if pooled else 0.0
    if variance <= 0.0:
        return 0.0
    return (successes_b / n_b - successes_a / n_a) / math.sqrt(variance)


class ProportionTest(Detector):
    """Two-proportion z-test of the current window against a reference window.

    ``update_many(n, successes)`` takes ``n`` more samples of which ``successes`` are 1
    (errors, positive predictions or positive labels).

    Parameters
    ----------
    reference_size
        Samples after a reset that make the reference.
    window_size
        Samples in each current window tested against the reference.
    threshold
        ``|z|`` from which the status is a drift.
    warning_threshold
        ``|z|`` from which the status is a warning.

    Examples
    --------
    >>> detector = ProportionTest(reference_size=1000, window_size=500)
    >>> _ = detector.update_many(1000, 100)
    >>> detector.update_many(500, 50)
    <Status.STABLE: 0>
    >>> detector.update_many(500, 150)
    <Status.DRIFT: 2>
    >>> round(detector.statistic, 1)
    9.8
    """

    PARAMS: ClassVar[tuple[str, ...]] = (
        "reference_size",
        "window_size",
        "threshold",
        "warning_threshold",
    )
    FIELDS: ClassVar[tuple[str, ...]] = ("reference", "current")

    def __init__(
        self,
        reference_size: int = 2_000,
        window_size: int = 500,
        threshold: float = 4.5,
        warning_threshold: float = 3.0,
    ) -> None:
        self.reference_size = reference_size
        self.window_size = window_size
        self.threshold = threshold
        self.warning_threshold = warning_threshold
        self.reference = [0, 0]  # [samples, successes]
        self.current = [0, 0]

    def update_many(self, n: int, errors: int) -> Status:
        """``n`` more samples, ``errors`` of them 1, in an unknown order."""
        check_block(n, errors)
        # A block that completes the reference gives it only the samples it lacks (their share
        # of the block's ones): the rest, which may bring the shift, is tested.
        room = max(0, self.reference_size - self.reference[0])
        taken = min(n, room)
        share = round(errors * taken / n) if n else 0
        self.reference[0] += taken
        self.reference[1] += share
        self.current[0] += n - taken
        self.current[1] += errors - share
        if self.current[0] < self.window_size:
            self._quiet()
            return self.status
        return self._test()

    def _test(self) -> Status:
        (n_ref, x_ref), (n_cur, x_cur) = self.reference, self.current
        self.statistic = two_proportion_z(x_ref, n_ref, x_cur, n_cur)
        self.status = classify(abs(self.statistic), self.warning_threshold, self.threshold)
        self.current = [0, 0]
        if self.status is Status.DRIFT:
            self.reference = [0, 0]
        return self.status
