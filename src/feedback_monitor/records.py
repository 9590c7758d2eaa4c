"""Feedback records: parsing and validation of request bodies, pure (bytes in, record or error out).

The seed contract: a JSON object whose ``prediction`` and ``actual`` are each exactly the JSON
integer 0 or 1; other fields are ignored.

>>> parse_feedback(b'{"prediction": 1, "actual": 0, "note": "x"}')
Feedback(prediction=1, actual=0, model='default', version='')
>>> parse_feedback(b'{"prediction": 1}')
Traceback (most recent call last):
...
feedback_monitor.records.InvalidFeedback: Missing required fields
"""

from typing import NamedTuple

import msgspec

MISSING_FIELDS = "Missing required fields"
BAD_VALUES = "Values must be 0 or 1"

# The exact JSON text of a value is compared, so 1.0, true and "1" are never taken for 1.
_BINARY = {b"0": 0, b"1": 1, b"-0": 0}
_ABSENT = (b"", b"null")


class Feedback(NamedTuple):
    """One labelled outcome of one series (model, version)."""

    prediction: int
    actual: int
    model: str = "default"
    version: str = ""

    @property
    def series(self) -> tuple[str, str]:
        return (self.model, self.version)


class InvalidFeedback(ValueError):
    """A request body that cannot be a feedback; ``reason`` is a short stable label."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


class _Body(msgspec.Struct):
    prediction: msgspec.Raw = msgspec.Raw()
    actual: msgspec.Raw = msgspec.Raw()


_decode_body = msgspec.json.Decoder(_Body).decode


def parse_feedback(body: bytes) -> Feedback:
    """The feedback in a request body, or ``InvalidFeedback`` saying precisely what is wrong."""
    parsed = _decode(body)
    prediction, actual = bytes(parsed.prediction), bytes(parsed.actual)
    if prediction in _ABSENT or actual in _ABSENT:
        raise InvalidFeedback(MISSING_FIELDS, "missing_fields")
    try:
        return Feedback(_BINARY[prediction], _BINARY[actual])
    except KeyError:
        raise InvalidFeedback(BAD_VALUES, "invalid_value") from None


def _decode(body: bytes) -> _Body:
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidFeedback("Body is not valid UTF-8", "invalid_utf8") from None
    try:
        return _decode_body(body)
    except msgspec.ValidationError:
        raise InvalidFeedback("Body must be a JSON object", "not_an_object") from None
    except msgspec.DecodeError as error:
        raise InvalidFeedback(f"Malformed JSON: {error}", "malformed_json") from None
    except RecursionError:
        raise InvalidFeedback("JSON is nested too deeply", "too_deep") from None
