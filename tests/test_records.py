"""parse_feedback: the seed's validation contract, and properties against a stdlib-json oracle.

The optional fields of issue 3 are in test_records_fields.py, batches in test_records_batch.py.
"""

import itertools
import json

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from feedback_monitor.records import Feedback, InvalidRecord, parse_feedback

# The seed's exact error strings: clients depend on them, so they are spelled out, not imported.
MISSING = "Missing required fields"
BAD_VALUES = "Values must be 0 or 1"
NOT_AN_OBJECT_REASONS = {"malformed_json", "not_an_object", "invalid_utf8", "too_deep"}
OPTIONAL_FIELDS = ("model", "version", "id", "score", "timestamp")
REASONS = {
    "missing_fields",
    "invalid_value",
    *NOT_AN_OBJECT_REASONS,
    *(f"invalid_{field}" for field in OPTIONAL_FIELDS),
}
DEEP = 100_000


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def rejection(raw: bytes) -> InvalidRecord:
    with pytest.raises(InvalidRecord) as caught:
        parse_feedback(raw)
    return caught.value


@pytest.mark.parametrize(("prediction", "actual"), list(itertools.product((0, 1), repeat=2)))
def test_accepts_each_outcome(prediction: int, actual: int) -> None:
    assert parse_feedback(body(prediction=prediction, actual=actual)) == Feedback(
        prediction, actual
    )


def test_ignores_unknown_fields() -> None:
    raw = body(actual=0, note="x", nested={"prediction": 5}, prediction=1, extra=[None, 2.5])
    assert parse_feedback(raw) == Feedback(prediction=1, actual=0)


@pytest.mark.parametrize(
    "fields",
    [{}, {"prediction": 1}, {"actual": 0}, {"prediction": None, "actual": 1},
     {"prediction": 0, "actual": None}, {"prediction": None, "actual": None},
     {"prediction": 2}, {"actual": "x"}, {"Prediction": 1, "Actual": 1}],
)  # fmt: skip
def test_missing_or_null_fields(fields: dict[str, object]) -> None:
    error = rejection(body(**fields))
    assert (error.message, error.reason, str(error)) == (MISSING, "missing_fields", MISSING)


INVALID_VALUES = [2, -1, 1.5, 1.0, 0.0, True, False, "1", "0", [1], {}, 10**30]


@pytest.mark.parametrize("value", INVALID_VALUES, ids=repr)
@pytest.mark.parametrize("field", ["prediction", "actual"])
def test_values_other_than_integer_0_or_1(field: str, value: object) -> None:
    fields: dict[str, object] = {"prediction": 1, "actual": 0, field: value}
    error = rejection(body(**fields))
    assert (error.message, error.reason) == (BAD_VALUES, "invalid_value")


@pytest.mark.parametrize("text", [b"1e0", b"1E0", b"0e0", b"-0.0", b"1.00", b"-1"])
def test_numbers_spelled_otherwise_are_not_integers(text: bytes) -> None:
    assert rejection(b'{"prediction": ' + text + b', "actual": 1}').reason == "invalid_value"


NOT_AN_OBJECT = {
    "empty": b"",
    "whitespace": b" \n\t",
    "malformed": b'{"prediction": 1, "actual": ',
    "single quotes": b"{'prediction': 1, 'actual': 1}",
    "trailing comma": b'{"prediction": 1, "actual": 1,}',
    "array": b'[{"prediction": 1, "actual": 1}]',
    "string": b'"{\\"prediction\\": 1}"',
    "number": b"1",
    "null": b"null",
    "true": b"true",
    "trailing garbage": b'{"prediction": 1, "actual": 1} x',
    "two documents": b'{"prediction": 1, "actual": 1}{}',
    "NaN field": b'{"prediction": NaN, "actual": 1}',
    "NaN ignored": b'{"prediction": 1, "actual": 1, "x": NaN}',
    "Infinity ignored": b'{"prediction": 1, "actual": 1, "x": Infinity}',
    "-Infinity ignored": b'{"prediction": 1, "actual": 1, "x": -Infinity}',
    "leading zero": b'{"prediction": 01, "actual": 1}',
    "utf-8 BOM": b'\xef\xbb\xbf{"prediction": 1, "actual": 1}',
    "invalid utf-8 first": b'\xff{"prediction": 1, "actual": 1}',
    "invalid utf-8 ignored": b'{"prediction": 1, "actual": 1, "note": "\xff"}',
    "invalid utf-8 key": b'{"prediction": 1, "actual": 1, "\xc3": 0}',
    "overlong utf-8": b'{"prediction": 1, "actual": 1, "note": "\xc0\xaf"}',
    "utf-8 surrogate": b'{"prediction": 1, "actual": 1, "note": "\xed\xa0\x80"}',
    "truncated utf-8": b'{"prediction": 1, "actual": 1} \xe2\x82',
    "deep arrays ignored": b'{"prediction": 1, "actual": 1, "x": '
    + b"[" * DEEP
    + b"]" * DEEP
    + b"}",
    "deep objects ignored": b'{"prediction": 1, "actual": 1, "x": '
    + b'{"a": ' * DEEP
    + b"0"
    + b"}" * DEEP
    + b"}",
    "deep top level": b"[" * DEEP + b"]" * DEEP,
}


@pytest.mark.parametrize("raw", list(NOT_AN_OBJECT.values()), ids=list(NOT_AN_OBJECT))
def test_bodies_that_are_not_a_json_object(raw: bytes) -> None:
    error = rejection(raw)
    assert error.reason in NOT_AN_OBJECT_REASONS
    assert error.message not in (MISSING, BAD_VALUES)
    assert error.message.strip()
    assert "\n" not in error.message
    assert len(error.message) < 200


@pytest.mark.parametrize(
    ("name", "reason"),
    [("empty", "malformed_json"), ("array", "not_an_object"), ("number", "not_an_object"),
     ("NaN ignored", "malformed_json"), ("trailing garbage", "malformed_json"),
     ("invalid utf-8 ignored", "invalid_utf8"), ("deep arrays ignored", "too_deep")],
)  # fmt: skip
def test_reasons_are_stable_labels(name: str, reason: str) -> None:
    assert rejection(NOT_AN_OBJECT[name]).reason == reason


LONE_HALVES = [rb"\ud800", rb"\uDBFFx", rb"\\\ud800", rb"\udc00", rb"\ud800\u0041"]


@pytest.mark.parametrize("text", LONE_HALVES)
@pytest.mark.parametrize("ended", [True, False], ids=["ended", "cut short"])
def test_a_lone_surrogate_escape_is_named_not_called_truncated(text: bytes, ended: bool) -> None:
    """msgspec called a body truncated where a pair's first half stands alone."""
    raw = b'{"prediction": 1, "actual": 1, "id": "' + text + (b'"}' if ended else b"")
    error = rejection(raw)
    assert (error.reason, "surrogate" in error.message) == ("malformed_json", True)


@pytest.mark.parametrize("text", [rb"\\ud800", rb"ab", rb"\ud83d\ude00"])
def test_a_body_cut_short_is_truncated(text: bytes) -> None:
    """(An escaped backslash before ``ud800`` escapes no u; a whole pair is a character.)"""
    error = rejection(b'{"prediction": 1, "actual": 1, "id": "' + text)
    assert error.message == "Malformed JSON: Input data was truncated"


@pytest.mark.parametrize("raw", [b"{1: 2}", b'{"prediction": 1} x', b"{"])
def test_malformed_json_is_said_once(raw: bytes) -> None:
    message = rejection(raw).message
    assert message.startswith("Malformed JSON: ")
    assert "malformed" not in message.removeprefix("Malformed JSON: ").lower()


def test_moderate_nesting_and_non_ascii_in_ignored_fields_are_fine() -> None:
    nested: object = 0
    for _ in range(50):
        nested = {"a": [nested]}
    raw = json.dumps({"prediction": 0, "actual": 1, "x": nested, "é": "€😀"}, ensure_ascii=False)
    assert parse_feedback(raw.encode()) == Feedback(prediction=0, actual=1)


# Properties


def assert_clean(raw: bytes) -> Feedback | InvalidRecord:
    """parse_feedback's outcome; any exception other than InvalidRecord fails the test."""
    outcome: Feedback | InvalidRecord
    try:
        outcome = parse_feedback(raw)
    except InvalidRecord as error:
        outcome = error
    if isinstance(outcome, InvalidRecord):
        assert outcome.reason in REASONS
        assert outcome.message
    else:
        assert outcome.prediction in (0, 1) or (outcome.prediction is None and outcome.id)
        assert outcome.actual in (0, 1)
    return outcome


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def oracle(raw: bytes) -> str | tuple[int, int]:
    """The stdlib's verdict: (prediction, actual), or the reason a body is rejected."""
    try:
        document = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        return "not_json"
    if not isinstance(document, dict):
        return "not_json"
    prediction, actual = document.get("prediction"), document.get("actual")
    if prediction is None or actual is None:
        return "missing_fields"
    if all(type(v) is int and v in (0, 1) for v in (prediction, actual)):
        return prediction, actual
    return "invalid_value"


def seed_only(raw: bytes) -> bool:
    """Whether a document leaves the optional fields alone: the oracle knows only the seed."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return True
    return not (isinstance(document, dict) and any(f in document for f in OPTIONAL_FIELDS))


def verdict(raw: bytes) -> str | tuple[int, int]:
    outcome = assert_clean(raw)
    if isinstance(outcome, Feedback):
        assert outcome.prediction is not None  # without one, a body has an id: not seed_only
        return outcome.prediction, outcome.actual
    return "not_json" if outcome.reason in NOT_AN_OBJECT_REASONS else outcome.reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
# Raw JSON text (valid or not) for the two fields, for spellings json.dumps never produces.
tokens = st.sampled_from(
    ["0", "1", "-0", " 1 ", "2", "1.0", "1e0", "0E0", "-0.0", "true", "null", '"1"', "[1]",
     "{}", "01", "+1", ".5", "1.", "0x1", "NaN", "Infinity", "-Infinity", "", "1 1"]
)  # fmt: skip
field_texts = st.one_of(
    st.sampled_from([0, 1]).map(json.dumps), tokens, json_values.map(json.dumps)
)


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    """A JSON-ish object: ignored members plus optional prediction/actual, in any order."""
    ensure_ascii = draw(st.booleans())
    members = [
        json.dumps(key, ensure_ascii=ensure_ascii) + ":" + json.dumps(v, ensure_ascii=ensure_ascii)
        for key, v in draw(st.dictionaries(st.text(max_size=10), json_values, max_size=4)).items()
    ]
    for field in ("prediction", "actual"):
        if draw(st.integers(0, 9)):  # present nine times in ten
            members.append(f'"{field}":' + draw(field_texts))
    members = draw(st.permutations(members))
    padding = draw(st.sampled_from(["", " ", "\n", "\t\r\n "]))
    return (padding + "{" + f",{padding}".join(members) + "}" + padding).encode()


@settings(max_examples=300, deadline=None)
@given(documents())
def test_agrees_with_stdlib_json_on_objects(raw: bytes) -> None:
    assume(seed_only(raw))
    assert verdict(raw) == oracle(raw)


@settings(max_examples=200, deadline=None)
@given(json_values.map(lambda v: json.dumps(v).encode()))
def test_agrees_with_stdlib_json_on_any_document(raw: bytes) -> None:
    assume(seed_only(raw))
    assert verdict(raw) == oracle(raw)


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """A document with a few bytes inserted, deleted or overwritten anywhere."""
    raw = bytearray(draw(documents()))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(raw)))
        raw[at : at + draw(st.integers(0, 2))] = draw(st.binary(max_size=3))
    return bytes(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | mangled())
def test_any_bytes_give_a_record_or_a_clean_error(raw: bytes) -> None:
    assert_clean(raw)
