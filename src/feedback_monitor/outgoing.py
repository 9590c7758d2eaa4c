"""The client's records as they go out: each value made Python's own (numpy's and pandas' too),
an id given to every one without, and the JSON body checked as the server checks it, so that
a record the server would refuse is refused before it is queued or sent."""

import math
import numbers
import secrets
import time
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

from feedback_monitor.records import (
    Feedback,
    InvalidRecord,
    Prediction,
    parse_feedback,
    parse_prediction,
)

Record = Feedback | Prediction


class Item(NamedTuple):
    """A record ready to go: with its id, and its body checked."""

    record: Record
    body: bytes  # the JSON object as sent


def new_id() -> str:
    """A UUIDv7 (RFC 9562, Python 3.14's ``uuid.uuid7``) in hex: the milliseconds since 1970,
    then 74 random bits. Ids that grow with time are stored at the end of the server's index of
    ids; random ones (uuid4) each rewrite a page of it somewhere, and the server takes a quarter
    to a third fewer of them a second (``bench.batch_ingestion``)."""
    milliseconds = time.time_ns() // 1_000_000
    value = milliseconds << 80 | 0x7 << 76 | secrets.randbits(12) << 64  # version 7
    value |= 0b10 << 62 | secrets.randbits(62)  # the RFC's variant
    return uuid.UUID(int=value).hex


def _encode(record: Record) -> bytes:
    return msgspec.json.encode({k: v for k, v in record._asdict().items() if v is not None})


_PLAIN = (int, float, str, bool, type(None))  # what msgspec encodes as the API reads it
_GIVE_TIME = "give a datetime with its time zone, or Unix seconds"


def _plain(field: str, value: Any) -> Any:
    """A field's value as one of ``_PLAIN``: a scalar of numpy's or pandas' (``predict`` gives
    numpy.int64, ``predict_proba`` numpy.float64, a DataFrame's column numpy.str_) as Python's
    own (a numpy.bool_ a bool, refused as True is), and a timestamp's datetime (pandas'
    Timestamp too) as Unix seconds. InvalidRecord, naming the field, for anything else."""
    if type(value) in _PLAIN:
        return value
    value = _unwrapped(field, value)
    if isinstance(value, datetime) and field == "timestamp":
        return _seconds(value)
    if type(value) in _PLAIN:
        return value
    if isinstance(value, str):  # numpy.str_, whose type msgspec does not encode
        return str(value)
    if isinstance(value, numbers.Real):
        return int(value) if isinstance(value, numbers.Integral) else float(value)
    kind = type(value)
    raise _invalid(field, f"cannot send a {kind.__module__}.{kind.__name__} ({value!r:.40})")


def _unwrapped(field: str, value: Any) -> Any:
    """A numpy scalar or 0-d array as Python's value (``item``), without importing numpy."""
    if getattr(getattr(value, "dtype", None), "kind", None) in ("M", "m"):
        # numpy's datetime64 has no time zone, and its item() is nanoseconds at some units.
        raise _invalid(field, f"a numpy {value.dtype} has no time zone: {_GIVE_TIME}")
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        return value.item()
    return value


def _seconds(timestamp: datetime) -> float:
    if timestamp != timestamp:  # pandas' NaT, a datetime that is none
        raise _invalid("timestamp", f"not a time: {_GIVE_TIME}")
    if timestamp.tzinfo is None:
        raise _invalid("timestamp", "a datetime needs its time zone")
    return timestamp.timestamp()


def _invalid(field: str, why: str) -> InvalidRecord:
    return InvalidRecord(f"Invalid {field}: {why}", f"invalid_{field}")


def item(record: Record) -> Item:
    """The record with an id (a new one if it has none), checked as the server checks it."""
    fields = record._asdict()
    if not all(type(value) in _PLAIN for value in fields.values()):  # (the common case)
        record = record._replace(**{k: _plain(k, v) for k, v in fields.items()})
    for field in ("score", "timestamp"):  # JSON has no NaN: msgspec would send null
        value = getattr(record, field)
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidRecord(f"Invalid {field}: not a finite number", f"invalid_{field}")
    if record.id is None and record.prediction is not None:
        record = record._replace(id=new_id())
    body = _encode(record)
    parse = parse_prediction if isinstance(record, Prediction) else parse_feedback
    parse(body)  # raises InvalidRecord, a ValueError, with the server's message
    return Item(record, body)


def items(records: Iterable[Record]) -> list[Item]:
    items = []
    for index, record in enumerate(records):
        try:
            items.append(item(record))
        except InvalidRecord as error:
            raise InvalidRecord(error.message, error.reason, index) from None
    return items


def batch_body(items: list[Item]) -> bytes:
    return b'{"items":[' + b",".join(item.body for item in items) + b"]}"
