"""Feedback and prediction records: parsing and validation of request bodies, pure.

Bytes in; records, or an ``InvalidRecord`` that says precisely what is wrong, out. The seed
contract keeps its meaning: ``prediction`` and ``actual`` are each exactly the JSON integer 0 or
1, and unknown fields are ignored.

>>> parse_feedback(b'{"prediction": 1, "actual": 0, "note": "x"}')
Feedback(prediction=1, actual=0, model='default', version='', id=None, score=None, timestamp=None)
>>> parse_feedback(b'{"prediction": 1}')
Traceback (most recent call last):
...
feedback_monitor.records.InvalidRecord: Missing required fields
>>> parse_feedback(b'{"id": "p-1", "actual": 1}').prediction is None  # joins a stored prediction
True
>>> parse_feedback(b'{"prediction": 1, "actual": 0, "model": "a b"}')  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
feedback_monitor.records.InvalidRecord: Invalid model: 1 to 64 characters, each a letter, ...
"""

import collections
import functools
import itertools
import operator
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, ClassVar, NamedTuple, TypeVar, cast

import msgspec

from feedback_monitor.errors import ClientError
from feedback_monitor.series import Series

T = TypeVar("T")
B = TypeVar("B")
Item = TypeVar("Item")

MISSING_FIELDS = "Missing required fields"
BAD_VALUES = "Values must be 0 or 1"

# msgspec refuses true, 1.0 and "1" for an int, so only the JSON integers 0 and 1 pass.
_Binary = Annotated[int, msgspec.Meta(ge=0, le=1)]
# \Z: no final newline. A model names a URL's path step (/api/v1/models/{model}), which . and
# .. cannot be: clients and browsers resolve them away.
NAME_PATTERN = r"^(?!\.\.?\Z)[A-Za-z0-9_.:-]{1,64}\Z"
VERSION_PATTERN = r"^[A-Za-z0-9_.:-]{0,64}\Z"
_Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
_Version = Annotated[str, msgspec.Meta(pattern=VERSION_PATTERN)]
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]  # and no control character:
# PostgreSQL's text cannot hold NUL, and the rest garble logs (``_check_id``: msgspec's pattern
# doubled the time of a batch with ids).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_Score = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
_Timestamp = Annotated[datetime, msgspec.Meta(tz=True)] | Annotated[float, msgspec.Meta(ge=0.0)]
_NAME_RULES = {
    "model": "1 to 64 characters, each a letter, a digit or one of _ . : -, but not . or ..",
    "version": "at most 64 characters, each a letter, a digit or one of _ . : -",
    "id": "1 to 128 characters, none of them a control character",
}
AHEAD = 86_400.0
"""How far ahead of this server's clock a timestamp may be: a clock a little fast counts at
arrival; a day ahead is a wrong clock, or milliseconds sent as seconds."""
# A \u escape of a surrogate pair's first half, not followed by another escape: msgspec calls
# the body truncated. Backslashes in pairs before it stand for themselves.
_LONE_FIRST_HALF = re.compile(rb"(?<!\\)(?:\\\\)*\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u)")
_ERROR_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>.*)`)?$", re.S)
_ITEM_PATH = re.compile(r"^\.items\[(?P<index>\d+)\](?:\.(?P<field>\w+))?")


class Feedback(NamedTuple):
    """One outcome. Without ``prediction`` it labels the stored prediction with this ``id``."""

    prediction: int | None
    actual: int
    model: str = "default"
    version: str = ""
    id: str | None = None
    score: float | None = None
    timestamp: float | None = None  # when the prediction was made, Unix seconds

    @property
    def series(self) -> tuple[str, str]:
        return (self.model, self.version)


def plain(feedback: "Feedback | _Body") -> int | None:
    """The prediction of a feedback that is only to be counted (no id to join or remember, no
    score or time to place); None for any other."""
    if feedback.id is None and feedback.score is None and feedback.timestamp is None:
        return feedback.prediction
    return None


class Prediction(NamedTuple):
    """What a model predicted, kept until its feedback arrives or it expires."""

    id: str
    prediction: int
    model: str = "default"
    version: str = ""
    score: float | None = None
    timestamp: float | None = None

    @property
    def series(self) -> tuple[str, str]:
        return (self.model, self.version)


class InvalidRecord(ClientError, ValueError):
    """A body that cannot be records; ``reason`` is a short stable label, ``index`` the item."""

    def __init__(
        self, message: str, reason: str, index: int | None = None, status: int = 400
    ) -> None:
        super().__init__(status, message, reason, index)


# Bodies are read with their names as any string, and each distinct name is checked after
# (``_good_names``): msgspec's pattern costs half a microsecond a name, most of a batch's
# reading. A body at fault is read again by its ``_Named...`` twin, to name its first error.


class _Body(msgspec.Struct, gc=False):
    prediction: _Binary | None = None
    actual: _Binary | None = None
    model: str = "default"
    version: str = ""
    id: _Id | None = None
    score: _Score | None = None
    timestamp: _Timestamp | None = None


class _NamedBody(_Body):
    model: _Name = "default"
    version: _Version = ""


class _Batch(msgspec.Struct, gc=False):
    items: list[_Body]


class _NamedBatch(msgspec.Struct, gc=False):
    items: list[_NamedBody]


class _PlainBody(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """A feedback that is only to be counted: any other field (an id, a score, a time, or
    anything unknown) fails it, and the item is read as a ``_Body`` instead."""

    prediction: _Binary
    actual: _Binary
    model: str = "default"
    version: str = ""


class _PlainBatch(msgspec.Struct, gc=False):
    items: list[_PlainBody]


class _SeedBody(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """A seed record, counted under the default series: any other field fails it."""

    prediction: _Binary
    actual: _Binary
    model: ClassVar[str] = "default"
    version: ClassVar[str] = ""


class _SeedBatch(msgspec.Struct, gc=False):
    items: list[_SeedBody]


class _PredictionBody(msgspec.Struct, gc=False):
    id: _Id | None = None
    prediction: _Binary | None = None
    model: str = "default"
    version: str = ""
    score: _Score | None = None
    timestamp: _Timestamp | None = None


class _NamedPredictionBody(_PredictionBody):
    model: _Name = "default"
    version: _Version = ""


class _PredictionBatch(msgspec.Struct, gc=False):
    items: list[_PredictionBody]


class _NamedPredictionBatch(msgspec.Struct, gc=False):
    items: list[_NamedPredictionBody]


class _Presence(msgspec.Struct, gc=False):
    """Which fields a body has, whatever their values: the seed checks presence first."""

    prediction: msgspec.Raw = msgspec.Raw()
    actual: msgspec.Raw = msgspec.Raw()
    id: msgspec.Raw = msgspec.Raw()
    timestamp: msgspec.Raw = msgspec.Raw()

    def has(self, field: str) -> bool:
        return bytes(getattr(self, field)) not in (b"", b"null")

    def missing_for_feedback(self) -> bool:
        return not self.has("actual") or not (self.has("prediction") or self.has("id"))

    def missing_for_prediction(self) -> bool:
        return not (self.has("id") and self.has("prediction"))

    def bad_value(self, fields: tuple[str, ...]) -> bool:
        """Whether one of these 0/1 fields holds anything but the JSON integer 0 or 1."""
        return any(self.has(f) and bytes(getattr(self, f)) not in _BINARY_TEXTS for f in fields)

    def later_error(self) -> "InvalidRecord | None":
        """The error of an id or a timestamp that msgspec lets through (``_check_id``,
        ``_seconds``), if there is one."""
        try:
            _check_id(_decode_text(self.id) if self.has("id") else None)
            _seconds(_decode_time(self.timestamp))
        except msgspec.DecodeError:  # absent, or msgspec's own error: not this one
            return None
        except InvalidRecord as error:
            return error
        return None


class _Kind(NamedTuple):
    """What a record needs: its 0/1 fields, and when it lacks a required field."""

    binary: tuple[str, ...]
    missing: Callable[[_Presence], bool]


_FEEDBACK = _Kind(("prediction", "actual"), _Presence.missing_for_feedback)
_PREDICTION = _Kind(("prediction",), _Presence.missing_for_prediction)
_BINARY_TEXTS = (b"0", b"1", b"-0")


class _PresenceBatch(msgspec.Struct, gc=False):
    items: list[_Presence]


_decode_body = msgspec.json.Decoder(_Body).decode
_decode_named_body = msgspec.json.Decoder(_NamedBody).decode
_decode_batch = msgspec.json.Decoder(_Batch).decode
_decode_named_batch = msgspec.json.Decoder(_NamedBatch).decode
_decode_plain_batch = msgspec.json.Decoder(_PlainBatch).decode
_decode_seed_batch = msgspec.json.Decoder(_SeedBatch).decode
_decode_prediction = msgspec.json.Decoder(_PredictionBody).decode
_decode_named_prediction = msgspec.json.Decoder(_NamedPredictionBody).decode
_decode_prediction_batch = msgspec.json.Decoder(_PredictionBatch).decode
_decode_named_prediction_batch = msgspec.json.Decoder(_NamedPredictionBatch).decode
_decode_presence = msgspec.json.Decoder(_Presence).decode
_decode_presence_batch = msgspec.json.Decoder(_PresenceBatch).decode
_decode_time = msgspec.json.Decoder(_Timestamp).decode
_decode_text = msgspec.json.Decoder(str).decode


def parse_time(text: str) -> datetime:
    """An RFC 3339 date-time read as a body's ``timestamp`` is (msgspec's reader, to the
    microsecond), so that queries and reports place a time where the writes did; ValueError if
    the text is none. Its zone may be missing: the caller names that error."""
    try:
        return msgspec.convert(text, datetime)
    except msgspec.ValidationError:
        raise ValueError(f"not an RFC 3339 date-time: {text!r}") from None


def parse_feedback(body: bytes) -> Feedback:
    """The feedback in a request body."""
    _check_utf8(body)
    return _feedback(_decode(body, _decode_body, _decode_named_body, _FEEDBACK, batch=False))


def parse_prediction(body: bytes) -> Prediction:
    """The prediction in a request body."""
    _check_utf8(body)
    record = _decode(body, _decode_prediction, _decode_named_prediction, _PREDICTION, False)
    return _prediction(record)


class FeedbackBatch(NamedTuple):
    """A batch as it will be written: plain feedback (no id, score or time) only ever gets
    counted, so it is counted here, per (model, version, prediction, actual); other items are
    kept whole."""

    counted: dict[tuple[str, str, int, int], int]
    keyed: list[tuple[int, Feedback]]
    source: Sequence[Any]  # the items as decoded, to name one at fault later

    def series(self) -> list[Series]:
        """Each item's (model, version), in order."""
        return list(map(_SERIES, self.source))


_ID = operator.attrgetter("id")
_CELL = operator.attrgetter("model", "version", "prediction", "actual")
_SERIES = operator.attrgetter("model", "version")
_MODEL = operator.attrgetter("model")
_VERSION = operator.attrgetter("version")
_PREDICTION_OF = operator.attrgetter("prediction")
_ACTUAL_OF = operator.attrgetter("actual")


def parse_feedback_batch(body: bytes, max_items: int) -> FeedbackBatch:
    """Every feedback of ``{"items": [...]}``, or the first invalid one's error and index."""
    # The common cases, a batch of seed records (one series, no model to compare) or of plain
    # items, are read as such and counted in C (map, sum, compress, Counter); anything else,
    # errors included, is read item by item. A field the first reading forbids fails it at the
    # first item that has one, which for a batch of such items is its first.
    _check_utf8(body)
    seed = _read_or_none(_decode_seed_batch, body)
    if seed is not None and len(seed.items) <= max_items:
        return FeedbackBatch(_count_series(seed.items, "default", ""), [], seed.items)
    plain = _read_or_none(_decode_plain_batch, body)
    if plain is not None and len(plain.items) <= max_items:
        names = _good_names(plain.items)
        if names is not None:
            return FeedbackBatch(_count_cells(plain.items, *names), [], plain.items)
    batch = _decode(body, _decode_batch, _decode_named_batch, _FEEDBACK, batch=True)
    return _feedback_batch(_items(batch.items, max_items))


def _read_or_none(decode: Callable[[bytes], T], body: bytes) -> T | None:
    """The body as ``decode`` reads it, or None if it cannot."""
    try:
        return decode(body)
    except (msgspec.DecodeError, RecursionError):  # a ValidationError is a DecodeError
        return None


def _count_cells(
    items: list[_PlainBody], models: set[str], versions: set[str]
) -> dict[tuple[str, str, int, int], int]:
    if len(models) > 1 or len(versions) > 1:
        return dict(collections.Counter(map(_CELL, items)))
    model, version = _SERIES(items[0]) if items else ("default", "")
    return _count_series(items, model, version)


def _count_series(
    items: list[_PlainBody] | list[_SeedBody], model: str, version: str
) -> dict[tuple[str, str, int, int], int]:
    predictions, actuals = list(map(_PREDICTION_OF, items)), list(map(_ACTUAL_OF, items))
    tp = sum(itertools.compress(predictions, actuals))
    fp, fn = sum(predictions) - tp, sum(actuals) - tp
    cells = {(1, 1): tp, (0, 0): len(items) - tp - fp - fn, (1, 0): fp, (0, 1): fn}
    return {(model, version, p, a): n for (p, a), n in cells.items() if n}


def _feedback_batch(items: list[_Body]) -> FeedbackBatch:
    counted: collections.Counter[tuple[str, str, int, int]] = collections.Counter()
    keyed = []
    latest = _latest()  # one clock for the whole batch
    for index, b in enumerate(items):
        prediction = plain(b)
        if prediction is not None and b.actual is not None:
            counted[b.model, b.version, prediction, b.actual] += 1
        else:
            keyed.append((index, _at(index, _feedback, b, latest)))
    return FeedbackBatch(dict(counted), keyed, items)


def parse_prediction_batch(body: bytes, max_items: int) -> list[Prediction]:
    """Every prediction of ``{"items": [...]}``, or the first invalid one's error and index."""
    _check_utf8(body)
    batch = _decode(
        body, _decode_prediction_batch, _decode_named_prediction_batch, _PREDICTION, batch=True
    )
    items, latest = _items(batch.items, max_items), _latest()
    return [_at(index, _prediction, item, latest) for index, item in enumerate(items)]


def _feedback(b: _Body, latest: float | None = None) -> Feedback:
    if b.actual is None or (b.prediction is None and b.id is None):
        raise InvalidRecord(MISSING_FIELDS, "missing_fields")
    _check_id(b.id)
    return Feedback(
        b.prediction, b.actual, b.model, b.version, b.id, b.score, _seconds(b.timestamp, latest)
    )


def _prediction(b: _PredictionBody, latest: float | None = None) -> Prediction:
    if b.id is None or b.prediction is None:
        raise InvalidRecord(MISSING_FIELDS, "missing_fields")
    _check_id(b.id)
    timestamp = _seconds(b.timestamp, latest)
    return Prediction(b.id, b.prediction, b.model, b.version, b.score, timestamp)


def _check_id(id: str | None) -> None:
    # isprintable() is True for no control character: the common case, fast.
    if id is not None and not id.isprintable() and _CONTROL.search(id):
        raise InvalidRecord(f"Invalid id: {_NAME_RULES['id']}", "invalid_id")


def _latest() -> float:
    """The latest timestamp taken now."""
    return time.time() + AHEAD


def _seconds(timestamp: datetime | float | None, latest: float | None = None) -> float | None:
    if timestamp is None:
        return None
    seconds = timestamp.timestamp() if isinstance(timestamp, datetime) else timestamp
    if seconds < 0:  # what msgspec's ``ge`` does for a number, for a time
        raise InvalidRecord("Invalid timestamp: before 1970-01-01T00:00:00Z", "invalid_timestamp")
    if seconds > (_latest() if latest is None else latest):
        message = "Invalid timestamp: more than a day ahead of the server's clock"
        if seconds > 1e11 and not isinstance(timestamp, datetime):  # past the year 5138
            message += " (Unix seconds, not milliseconds)"
        raise InvalidRecord(message, "invalid_timestamp")
    return seconds


def _at(index: int, build: Callable[[B, float], T], item: B, latest: float) -> T:
    try:
        return build(item, latest)
    except InvalidRecord as error:
        raise InvalidRecord(error.message, error.reason, index) from None


def _items(items: list[Item], max_items: int) -> list[Item]:
    if len(items) > max_items:
        message = f"Too many items: at most {max_items} per batch"
        raise InvalidRecord(message, "too_many_items", status=413)
    return items


def _decode(
    body: bytes,
    decode: Callable[[bytes], T],
    named: Callable[[bytes], object],
    kind: _Kind,
    batch: bool,
) -> T:
    """The body (valid UTF-8) as ``decode`` reads it, its names checked; if it is at fault,
    the error that ``named`` (its twin that checks names) and ``_first_error`` find."""
    record: Any = _read_or_none(decode, body)
    if record is not None:
        if batch:
            if _good_names(record.items) is not None:
                return record  # type: ignore[no-any-return]
        elif _good_model(record.model) and _good_version(record.version):
            return record  # type: ignore[no-any-return]
    return cast(T, _decode_named(body, named, kind, batch))


def _check_utf8(body: bytes) -> None:
    """First, for every body: msgspec skips an unknown field's value unread, and fails with a
    bare UnicodeDecodeError on a value it reads."""
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRecord("Body is not valid UTF-8", "invalid_utf8") from None


def _good_names(items: Sequence[Any]) -> tuple[set[str], set[str]] | None:
    """The distinct models and versions of a batch's items if each is a good name (checked
    once each), else None."""
    models, versions = set(map(_MODEL, items)), set(map(_VERSION, items))
    if all(map(_good_model, models)) and all(map(_good_version, versions)):
        return models, versions
    return None


def _good_model(name: str) -> bool:
    return len(name) <= 64 and _matches(NAME_PATTERN, name)


def _good_version(name: str) -> bool:
    return len(name) <= 64 and _matches(VERSION_PATTERN, name)


# The same few names come again and again. A name past 64 characters, never good, is never
# kept: it may be as long as the body.
@functools.lru_cache(maxsize=1024)
def _matches(pattern: str, name: str) -> bool:
    return re.match(pattern, name) is not None


def _decode_named(body: bytes, decode: Callable[[bytes], T], kind: _Kind, batch: bool) -> T:
    try:
        return decode(body)
    except msgspec.ValidationError as error:
        invalid = _invalid(str(error))
    except msgspec.DecodeError as error:
        raise _malformed(error, body) from None
    except RecursionError:
        raise _too_deep() from None
    raise _first_error(body, invalid, kind, batch)


def _first_error(body: bytes, invalid: InvalidRecord, kind: _Kind, batch: bool) -> InvalidRecord:
    """The error to report: the first item at fault, and in it the seed's order: missing
    fields, then bad 0/1 values, then any other field. msgspec stops at the first bad value it
    meets, so a second, lenient read (which also finds a syntax error further on) decides; a
    time before 1970 or too far ahead, or an id with a control character, which msgspec lets
    through, is found there too."""
    presences = _presences(body, batch)
    if presences is None:  # not an object (or not a list of them): the first error stands
        return invalid
    last = len(presences) - 1 if invalid.index is None else invalid.index
    for index, presence in enumerate(presences[: last + 1]):
        at = index if batch else None
        if kind.missing(presence):
            return InvalidRecord(MISSING_FIELDS, "missing_fields", at)
        if presence.bad_value(kind.binary):
            return InvalidRecord(BAD_VALUES, "invalid_value", at)
        if (error := presence.later_error()) is not None:  # (in msgspec's item too: an id
            return InvalidRecord(error.message, error.reason, at)  # was named before a score)
    return invalid


def _presences(body: bytes, batch: bool) -> list[_Presence] | None:
    """The fields present in the body or in each item; raises if the body is not JSON."""
    try:
        return _decode_presence_batch(body).items if batch else [_decode_presence(body)]
    except msgspec.ValidationError:
        return None
    except msgspec.DecodeError as error:
        raise _malformed(error, body) from None
    except RecursionError:
        raise _too_deep() from None


def _malformed(error: msgspec.DecodeError, body: bytes) -> InvalidRecord:
    detail = str(error).removeprefix("JSON is malformed: ")  # said once is enough
    if detail == "Input data was truncated" and _LONE_FIRST_HALF.search(body):
        detail = "invalid utf-16 surrogate pair (a first half alone)"  # msgspec's words else
    return InvalidRecord(f"Malformed JSON: {detail}", "malformed_json")


def _too_deep() -> InvalidRecord:
    return InvalidRecord("JSON is nested too deeply", "too_deep")


def _invalid(error: str) -> InvalidRecord:
    """The client's message for a msgspec validation error, naming the field and item."""
    found = _ERROR_PATH.match(error)
    assert found is not None  # the pattern matches any text
    message, path = found["message"], found["path"] or ""
    index = None
    if item := _ITEM_PATH.match(path):
        index, path = int(item["index"]), "." + (item["field"] or "")
    field = path.removeprefix(".")
    if field in ("prediction", "actual"):
        return InvalidRecord(BAD_VALUES, "invalid_value", index)
    if field:
        if "regex" in message:  # say the rule in words rather than as a pattern
            message = _NAME_RULES[field]
        return InvalidRecord(f"Invalid {field}: {message}", f"invalid_{field}", index)
    if index is not None:
        return InvalidRecord("Item must be a JSON object", "not_an_object", index)
    if (path == "" and "items" in message) or path == ".items":
        return InvalidRecord('Body must be {"items": [...]}', "not_a_batch")
    return InvalidRecord("Body must be a JSON object", "not_an_object")
