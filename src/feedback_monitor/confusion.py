"""The binary confusion matrix and every metric derived from it (pure).

A zero denominator gives 0.0, the convention of scikit-learn's ``zero_division=0``:

>>> c = Counts(tp=3, tn=5, fp=1, fn=1)
>>> c.accuracy, c.precision, c.recall, c.f1_score
(0.8, 0.75, 0.75, 0.75)
>>> Counts().precision
0.0
>>> Counts().add(prediction=1, actual=0)
Counts(tp=0, tn=0, fp=1, fn=0)

Every metric that is a proportion of counts also has a Wilson 95% interval, so a window of three
samples shows how little it knows; no trial gives the whole of [0, 1]:

>>> low, high = c.intervals()["accuracy"]
>>> round(low, 3), round(high, 3)
(0.49, 0.943)
>>> Counts().intervals()["recall"]
(0.0, 1.0)
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)
"""The normal quantile of a two-sided 95% interval."""


def _ratio(numerator: float, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


@dataclass(frozen=True, slots=True)
class Costs:
    """The value of one outcome of each kind: a gain is positive, a cost is negative."""

    tp: float
    tn: float
    fp: float
    fn: float


CELL = {(1, 1): 0, (0, 0): 1, (1, 0): 2, (0, 1): 3}
"""The index in ``Counts.fields`` of an outcome, by (prediction, actual)."""


@dataclass(frozen=True, slots=True)
class Counts:
    """Counts of true/false positives/negatives; immutable, so a snapshot can be shared."""

    tp: int = 0
    tn: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def fields(self) -> tuple[int, int, int, int]:
        return (self.tp, self.tn, self.fp, self.fn)

    @property
    def total(self) -> int:
        return self.tp + self.tn + self.fp + self.fn

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.total)

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1_score(self) -> float:
        # 2TP / (2TP + FP + FN) equals 2PR / (P + R) and stays exact when P + R is 0.
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def specificity(self) -> float:
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def balanced_accuracy(self) -> float:
        """Mean recall of the actual classes present (scikit-learn skips an absent class)."""
        # An absent class's recall is 0.0, so the sum holds the classes present alone.
        present = bool(self.tp + self.fn) + bool(self.tn + self.fp)
        return _ratio(self.recall + self.specificity, present)

    @property
    def matthews(self) -> float:
        """Matthews correlation coefficient; 0.0 when a row or column is empty, as scikit-learn."""
        predicted, actual = self.tp + self.fp, self.tp + self.fn
        spread = math.sqrt(predicted * actual) * math.sqrt(
            (self.total - predicted) * (self.total - actual)
        )  # two roots: one of the whole product overflows a float sooner
        if not spread:
            return 0.0
        # Rounding may pass ±1 by an ulp (a perfect classifier of 10^8 outcomes gave 1 + 2e-16).
        return max(-1.0, min(1.0, (self.tp * self.tn - self.fp * self.fn) / spread))

    @property
    def prevalence(self) -> float:
        return _ratio(self.tp + self.fn, self.total)

    @property
    def positive_rate(self) -> float:
        return _ratio(self.tp + self.fp, self.total)

    @property
    def baseline_accuracy(self) -> float:
        """Accuracy of always predicting the majority actual class."""
        return _ratio(max(self.tp + self.fn, self.tn + self.fp), self.total)

    def undefined(self) -> frozenset[str]:
        """The metrics whose denominator is zero, given as 0.0.

        >>> sorted(Counts(tn=2).undefined())
        ['f1_score', 'matthews', 'precision', 'recall']
        """
        predicted, actual = self.tp + self.fp, self.tp + self.fn
        denominators = {
            "accuracy": self.total,
            "precision": predicted,
            "recall": actual,
            "f1_score": 2 * self.tp + self.fp + self.fn,
            "specificity": self.tn + self.fp,
            "balanced_accuracy": self.total,
            "matthews": predicted * actual * (self.total - predicted) * (self.total - actual),
            "prevalence": self.total,
            "positive_rate": self.total,
            "baseline_accuracy": self.total,
        }
        return frozenset(name for name, denominator in denominators.items() if not denominator)

    def proportions(self) -> dict[str, tuple[int, int]]:
        """Each metric that is a proportion of counts, as (successes, trials)."""
        # F1, MCC and balanced accuracy combine several proportions: no binomial interval fits.
        return {
            "accuracy": (self.tp + self.tn, self.total),
            "precision": (self.tp, self.tp + self.fp),
            "recall": (self.tp, self.tp + self.fn),
            "specificity": (self.tn, self.tn + self.fp),
            "prevalence": (self.tp + self.fn, self.total),
            "positive_rate": (self.tp + self.fp, self.total),
            "baseline_accuracy": (max(self.tp + self.fn, self.tn + self.fp), self.total),
        }

    def intervals(self, z: float = Z95) -> dict[str, tuple[float, float]]:
        """The Wilson interval of each proportion, by metric name."""
        return {name: wilson(*parts, z=z) for name, parts in self.proportions().items()}

    def cost(self, costs: Costs) -> float:
        """The total value of these outcomes (NannyML's business value).

        >>> Counts(tp=3, tn=5, fp=1, fn=1).cost(Costs(tp=10.0, tn=0.0, fp=-2.0, fn=-5.0))
        23.0
        """
        return self.tp * costs.tp + self.tn * costs.tn + self.fp * costs.fp + self.fn * costs.fn

    def add(self, prediction: int, actual: int) -> "Counts":
        """These counts with one more outcome."""
        fields = list(self.fields)
        fields[CELL[prediction, actual]] += 1
        return Counts(*fields)

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(
            self.tp + other.tp, self.tn + other.tn, self.fp + other.fp, self.fn + other.fn
        )


def cells(counted: Mapping[tuple[str, str, int, int], int]) -> dict[tuple[str, str], Counts]:
    """The counts per (model, version) of outcomes counted as (model, version, prediction,
    actual).

    >>> cells({("fraud", "v1", 1, 1): 3, ("fraud", "v1", 1, 0): 2, ("spam", "", 0, 0): 1})
    {('fraud', 'v1'): Counts(tp=3, tn=0, fp=2, fn=0), ('spam', ''): Counts(tp=0, tn=1, fp=0, fn=0)}
    """
    per_series: dict[tuple[str, str], list[int]] = {}
    for (model, version, prediction, actual), count in counted.items():
        per_series.setdefault((model, version), [0, 0, 0, 0])[CELL[prediction, actual]] += count
    return {series: Counts(*c) for series, c in per_series.items()}


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of successes out of n trials; (0.0, 1.0) when n is 0.

    >>> low, high = wilson(0, 10)
    >>> low, round(high, 4)
    (0.0, 0.2775)
    >>> wilson(10, 10)[1]
    1.0
    """
    if not n:
        return (0.0, 1.0)
    # The upper bound is the lower bound of the failures, mirrored: symmetric, and exact at 1.0.
    return (_wilson_low(successes, n, z), 1.0 - _wilson_low(n - successes, n, z))


def _wilson_low(successes: int, n: int, z: float) -> float:
    """The lower Wilson bound, written in counts so that no success gives exactly 0.0."""
    square = z * z
    center = (successes + square / 2) / (n + square)
    return center - z * math.sqrt(successes * (n - successes) / n + square / 4) / (n + square)
