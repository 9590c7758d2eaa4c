"""What every drift detector shares: the status scale, block validation and the persisted state.

A detector watches one series' stream of errors (1 = wrong), fed per commit as blocks of
``(n, errors)``. ``state()`` is a dict of JSON-serialisable plain values: the constructor's
parameters under their own names beside the learnt fields, so ``from_state`` can rebuild it.
"""

from __future__ import annotations

import abc
import copy
from enum import IntEnum
from typing import Any, ClassVar, Self


class Status(IntEnum):
    """The scale of ``feedback_drift_status``."""

    STABLE = 0
    WARNING = 1
    DRIFT = 2


def check_block(n: int, errors: int) -> None:
    """Reject a block that cannot be: ``errors`` counts wrong samples among ``n``."""
    if n < 0 or not 0 <= errors <= n:
        raise ValueError(f"a block needs 0 <= errors <= n, got n={n}, errors={errors}")


def classify(statistic: float, warning: float, drift: float) -> Status:
    """The status of a statistic against its warning and drift thresholds."""
    if statistic >= drift:
        return Status.DRIFT
    if statistic >= warning:
        return Status.WARNING
    return Status.STABLE


class Detector(abc.ABC):
    """A pure, stateful drift detector; subclasses name their parameters and learnt fields."""

    PARAMS: ClassVar[tuple[str, ...]]
    FIELDS: ClassVar[tuple[str, ...]]

    status: Status = Status.STABLE
    statistic: float = 0.0

    @property
    def drift_detected(self) -> bool:
        """Whether the last update ended in a drift (the detector has since reset itself)."""
        return self.status is Status.DRIFT

    def update(self, error: int) -> Status:
        """One more sample: 1 if the prediction was wrong, 0 if right."""
        return self.update_many(1, error)

    @abc.abstractmethod
    def update_many(self, n: int, errors: int) -> Status:
        """``n`` more samples, ``errors`` of them wrong, in an unknown order."""

    def state(self) -> dict[str, Any]:
        """Parameters and learnt fields as JSON-serialisable plain values.

        A view, not a copy (the store serialises it on every commit): the next update changes
        it. ``from_state`` copies what it is given.
        """
        values = {name: getattr(self, name) for name in (*self.PARAMS, *self.FIELDS)}
        return values | {"status": int(self.status), "statistic": self.statistic}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """The detector that ``state()`` described, ready for the rest of the stream."""
        detector = cls(**{name: state[name] for name in cls.PARAMS})
        for name in cls.FIELDS:
            setattr(detector, name, copy.deepcopy(state[name]))
        detector.status = Status(state["status"])
        detector.statistic = float(state["statistic"])
        return detector

    def _quiet(self) -> None:
        """No test ran on this update: a drift belongs to the update that found it."""
        self.status = min(self.status, Status.WARNING)
