"""parse_feedback and parse_prediction with issue 3's optional fields: each bad one is a 400
whose message names it, while the seed's messages keep their meaning."""

import itertools
import json
import time
from collections.abc import Callable
from datetime import datetime

import pytest

from feedback_monitor.records import (
    Feedback,
    InvalidRecord,
    Prediction,
    parse_feedback,
    parse_prediction,
)

# The seed's exact error strings: clients depend on them, so they are spelled out, not imported.
MISSING = "Missing required fields"
BAD_VALUES = "Values must be 0 or 1"


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def rejection(raw: bytes, parse: Callable[[bytes], object] = parse_feedback) -> InvalidRecord:
    with pytest.raises(InvalidRecord) as caught:
        parse(raw)
    return caught.value


FEEDBACK: dict[str, object] = {"prediction": 1, "actual": 0}
PREDICTION: dict[str, object] = {"id": "p-1", "prediction": 1}
Parser = Callable[[bytes], Feedback | Prediction]
PARSERS: dict[str, tuple[Parser, dict[str, object]]] = {
    "feedback": (parse_feedback, FEEDBACK),
    "prediction": (parse_prediction, PREDICTION),
}


def rfc3339(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


VALID_OPTIONAL = [
    ("model", "a" * 64, "a" * 64), ("model", "A-z_0.9:x", "A-z_0.9:x"), ("version", "", ""),
    ("version", "v" * 64, "v" * 64), ("id", "x", "x"), ("id", "é" * 128, "é" * 128),
    ("id", "a b/ü 🙂", "a b/ü 🙂"),
    ("score", 0, 0.0), ("score", 1, 1.0), ("score", 0.25, 0.25), ("score", None, None),
    ("timestamp", "2024-01-01T00:00:00Z", rfc3339("2024-01-01T00:00:00Z")),
    ("timestamp", "2024-01-01T02:00:00+02:00", rfc3339("2024-01-01T00:00:00Z")),
    ("timestamp", "2024-06-30T23:59:59.25-07:30", rfc3339("2024-06-30T23:59:59.25-07:30")),
    ("timestamp", 1704067200, 1704067200.0), ("timestamp", 1704067200.5, 1704067200.5),
    ("timestamp", 0, 0.0), ("timestamp", None, None),
    ("timestamp", "1970-01-01T01:00:00+01:00", 0.0),
]  # fmt: skip


@pytest.mark.parametrize("parser", list(PARSERS))
@pytest.mark.parametrize(("field", "value", "parsed"), VALID_OPTIONAL, ids=repr)
def test_valid_optional_fields(parser: str, field: str, value: object, parsed: object) -> None:
    parse, base = PARSERS[parser]
    record = parse(body(**{**base, field: value}))
    assert getattr(record, field) == parsed
    assert type(getattr(record, field)) is type(parsed)


def test_defaults_of_the_optional_fields() -> None:
    assert parse_feedback(body(**FEEDBACK)) == Feedback(1, 0, "default", "", None, None, None)
    assert parse_prediction(body(**PREDICTION)) == Prediction("p-1", 1, "default", "", None, None)
    assert parse_feedback(body(id="p-1", actual=1)) == Feedback(None, 1, id="p-1")


INVALID_OPTIONAL = [
    ("model", ""), ("model", "a" * 65), ("model", "a b"), ("model", "é"), ("model", "a/b"),
    ("model", "."), ("model", ".."),  # URL path steps: /api/v1/models/.. would be resolved away
    ("model", 1), ("model", True), ("model", None), ("model", ["a"]),
    ("version", "v" * 65), ("version", "a b"), ("version", 1), ("version", False),
    ("version", None), ("id", ""), ("id", "x" * 129), ("id", 5), ("id", True), ("id", 1.5),
    ("id", ["x"]), ("id", {}), ("score", -0.1), ("score", 1.0000001), ("score", 2),
    ("score", "0.5"), ("score", True), ("score", False), ("score", [0.5]),
    ("timestamp", "2024-01-01T00:00:00"), ("timestamp", "2024-01-01"), ("timestamp", ""),
    ("timestamp", "yesterday"), ("timestamp", "1704067200"), ("timestamp", "2024-13-01T00:00:00Z"),
    ("timestamp", -1), ("timestamp", True), ("timestamp", [1]), ("timestamp", {}),
    ("timestamp", "1969-12-31T23:59:59Z"), ("timestamp", "1970-01-01T00:59:59+01:00"),
    ("timestamp", "0001-01-01T00:00:00+01:00"), ("id", "a\x00b"), ("id", "\t"), ("id", "a\n"),
    ("id", "\x7f"), ("id", "\x85"),  # PostgreSQL's text cannot hold NUL; the rest garble logs
    ("timestamp", 4e9), ("timestamp", "2099-01-01T00:00:00Z"),
    ("timestamp", "9999-12-31T23:59:59Z"),  # years ahead: a wrong clock, or milliseconds
]  # fmt: skip


@pytest.mark.parametrize("parser", list(PARSERS))
@pytest.mark.parametrize(("field", "value"), INVALID_OPTIONAL, ids=repr)
def test_a_bad_optional_field_is_named(parser: str, field: str, value: object) -> None:
    parse, base = PARSERS[parser]
    error = rejection(body(**{**base, field: value}), parse)
    assert (error.reason, error.index) == (f"invalid_{field}", None)
    assert error.message.startswith(f"Invalid {field}: ")
    assert "\n" not in error.message
    assert len(error.message) < 200


@pytest.mark.parametrize("parser", list(PARSERS))
@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("score", b"1e400"),
        ("score", b"-0.0000001"),
        ("timestamp", b"-1e-9"),
        ("timestamp", b"1e400"),
    ],
)
def test_numbers_just_out_of_range_are_refused(parser: str, field: str, text: bytes) -> None:
    parse, base = PARSERS[parser]
    raw = body(**base)[:-1] + f', "{field}": '.encode() + text + b"}"
    assert rejection(raw, parse).reason == f"invalid_{field}"


SEED_MESSAGES = [
    ({"actual": 1, "model": "m", "version": "v1", "score": 0.5}, MISSING),
    ({"id": "x"}, MISSING),
    ({"id": None, "actual": 1}, MISSING),
    ({"prediction": 2, "model": "m", "id": "x"}, MISSING),
    ({"prediction": 2, "actual": 1, "model": "m", "id": "x", "score": 0.1}, BAD_VALUES),
    ({"id": "x", "actual": 2}, BAD_VALUES),
    ({"id": "x", "actual": True, "timestamp": 0}, BAD_VALUES),
]


@pytest.mark.parametrize(("fields", "message"), SEED_MESSAGES, ids=repr)
def test_the_seed_messages_hold_beside_optional_fields_in_any_order(
    fields: dict[str, object], message: str
) -> None:
    for order in itertools.permutations(fields.items()):
        assert rejection(json.dumps(dict(order)).encode()).message == message


def test_the_error_does_not_depend_on_the_order_of_members() -> None:
    fields = {"prediction": 3, "actual": 1, "score": 5}
    errors = {
        rejection(json.dumps(dict(order)).encode()).reason
        for order in itertools.permutations(fields.items())
    }
    assert len(errors) == 1, errors


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"prediction": 1}, MISSING), ({"id": "p"}, MISSING), ({"id": None, "prediction": 1}, MISSING),
     ({"id": "p", "prediction": 2}, BAD_VALUES), ({"id": "p", "prediction": 1.0}, BAD_VALUES)],
)  # fmt: skip
def test_a_prediction_needs_an_id_and_a_0_or_1(fields: dict[str, object], message: str) -> None:
    assert rejection(body(**fields), parse_prediction).message == message


def test_a_prediction_ignores_actual() -> None:
    assert parse_prediction(body(**PREDICTION, actual=7)) == Prediction("p-1", 1)


def test_an_id_with_a_control_character_is_named_before_another_bad_field() -> None:
    for order in itertools.permutations({"id": "a\x01", "score": 5}.items()):
        assert rejection(body(**FEEDBACK, **dict(order))).reason == "invalid_id"


def test_a_timestamp_ahead_of_the_clock_counts_within_a_day() -> None:
    """A client's clock a little fast is no error (the store counts such an outcome at its
    arrival); a day ahead is, and milliseconds sent as seconds are named."""
    soon = time.time() + 3600
    assert parse_feedback(body(**FEEDBACK, timestamp=soon)).timestamp == soon
    late = rejection(body(**FEEDBACK, timestamp=time.time() + 86_400 + 60))
    assert late.message == "Invalid timestamp: more than a day ahead of the server's clock"
    milliseconds = rejection(body(**FEEDBACK, timestamp=time.time() * 1000))
    assert milliseconds.message.endswith("(Unix seconds, not milliseconds)")
