"""The binary confusion matrix and every metric derived from it (pure).

A zero denominator gives 0.0, the convention of scikit-learn's ``zero_division=0``:

>>> c = Counts(tp=3, tn=5, fp=1, fn=1)
>>> c.accuracy, c.precision, c.recall, c.f1_score
(0.8, 0.75, 0.75, 0.75)
>>> Counts().precision
0.0
>>> Counts().add(prediction=1, actual=0)
Counts(tp=0, tn=0, fp=1, fn=0)
"""

from dataclasses import dataclass


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


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

    def add(self, prediction: int, actual: int) -> "Counts":
        """These counts with one more outcome."""
        if prediction:
            if actual:
                return Counts(self.tp + 1, self.tn, self.fp, self.fn)
            return Counts(self.tp, self.tn, self.fp + 1, self.fn)
        if actual:
            return Counts(self.tp, self.tn, self.fp, self.fn + 1)
        return Counts(self.tp, self.tn + 1, self.fp, self.fn)

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(
            self.tp + other.tp, self.tn + other.tn, self.fp + other.fp, self.fn + other.fn
        )
