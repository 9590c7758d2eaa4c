"""The JSON shapes the API answers with; msgspec encodes them and derives their JSON Schema."""

import functools
from typing import Annotated, Literal

import msgspec

from feedback_monitor.confusion import Counts


class Metrics(msgspec.Struct):
    """The seed's four metrics of one series; 0.0 where a denominator is zero."""

    accuracy: float
    precision: float
    recall: float
    f1_score: float

    @classmethod
    def of(cls, counts: Counts) -> "Metrics":
        return cls(counts.accuracy, counts.precision, counts.recall, counts.f1_score)


class FeedbackAccepted(msgspec.Struct):
    """An accepted feedback: metrics over all committed feedback, this one included."""

    success: Literal[True]
    metrics: Metrics


class Error(msgspec.Struct):
    """Every error answer."""

    error: str


class Status(msgspec.Struct):
    """The answer of /health and /ready."""

    status: str


_BINARY_DOC = 'Exactly the JSON integer 0 or 1: 1.0, true and "1" are refused.'


class FeedbackRequest(msgspec.Struct):
    """The body of POST /feedback; other fields are ignored (parsing is in records.py)."""

    prediction: Annotated[Literal[0, 1], msgspec.Meta(description=_BINARY_DOC)]
    actual: Annotated[Literal[0, 1], msgspec.Meta(description=_BINARY_DOC)]


encode = msgspec.json.Encoder().encode


@functools.lru_cache(maxsize=4096)
def feedback_accepted(counts: Counts) -> bytes:
    """The encoded answer at these counts; every request of one commit and series shares it."""
    return encode(FeedbackAccepted(True, Metrics.of(counts)))
