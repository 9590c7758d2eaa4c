"""parse_feedback_batch and parse_prediction_batch: ``{"items": [...]}`` all or nothing, the index
of the first invalid item, the item limit; the stdlib's json reads the oracle's side."""

import collections
import json
import random
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from feedback_monitor.records import (
    Feedback,
    FeedbackBatch,
    InvalidRecord,
    Prediction,
    parse_feedback_batch,
    parse_prediction_batch,
)

MISSING = "Missing required fields"
BAD_VALUES = "Values must be 0 or 1"
MAX = 50
Item = dict[str, Any]


def batch(items: list[Any]) -> bytes:
    return json.dumps({"items": items}).encode()


def rejection(raw: bytes, parse: Callable[[bytes, int], object]) -> InvalidRecord:
    with pytest.raises(InvalidRecord) as caught:
        parse(raw, MAX)
    return caught.value


def random_feedback(rng: random.Random) -> Item:
    item: Item = {"prediction": rng.randint(0, 1), "actual": rng.randint(0, 1)}
    for field, value in [("model", rng.choice(["a", "b.c"])), ("version", rng.choice(["", "v1"])),
                         ("score", rng.random()), ("timestamp", rng.randrange(10**9))]:  # fmt: skip
        if rng.random() < 0.5:
            item[field] = value
    if rng.random() < 0.3:
        item["id"] = f"id-{rng.randrange(10**6)}"
        if rng.random() < 0.5:
            del item["prediction"]  # a join
    return item


def expected_batch(items: list[Item]) -> "Expected":
    """Plain items (no id, score or time) counted per (model, version, prediction, actual); the
    others kept whole."""
    counted: collections.Counter[tuple[str, str, int, int]] = collections.Counter()
    keyed = []
    for index, item in enumerate(items):
        model, version = item.get("model", "default"), item.get("version", "")
        if all(item.get(field) is None for field in ("id", "score", "timestamp")):
            counted[model, version, item["prediction"], item["actual"]] += 1
            continue
        timestamp = item.get("timestamp")
        feedback = Feedback(
            item.get("prediction"), item["actual"], model, version, item.get("id"),
            item.get("score"), None if timestamp is None else float(timestamp),
        )  # fmt: skip
        keyed.append((index, feedback))
    series = [(item.get("model", "default"), item.get("version", "")) for item in items]
    return Expected(dict(counted), keyed, series)


class Expected(NamedTuple):
    counted: dict[tuple[str, str, int, int], int]
    keyed: list[tuple[int, Feedback]]
    series: list[tuple[str, str]]


def seen(parsed: FeedbackBatch) -> Expected:
    """What a parsed batch holds, in the shape of the expectation."""
    return Expected(parsed.counted, parsed.keyed, parsed.series())


@pytest.mark.parametrize("with_ids", [False, True])
@pytest.mark.parametrize("seed", range(10))
def test_a_feedback_batch_is_counted_and_its_keyed_items_kept(seed: int, with_ids: bool) -> None:
    rng = random.Random(seed)
    items = [random_feedback(rng) for _ in range(rng.randint(1, MAX))]
    if not with_ids:
        items = [{k: v for k, v in item.items() if k != "id"} | {"prediction": 1} for item in items]
    assert seen(parse_feedback_batch(batch(items), MAX)) == expected_batch(items)


def plain_items(rng: random.Random, shape: str) -> list[Item]:
    items: list[Item] = [
        {"prediction": rng.randint(0, 1), "actual": rng.randint(0, 1)}
        for _ in range(rng.randint(1, MAX))
    ]
    if shape == "one series":
        items = [item | {"model": "a", "version": "v1"} for item in items]
    elif shape == "several series":
        items = [item | {"model": rng.choice(["a", "b"])} for item in items]
    elif shape == "seed, then one of another series":
        items[-1]["model"] = "a"
    elif shape == "seed, then a keyed one":
        items[-1]["id"] = "p-1"
    return items


@pytest.mark.parametrize(
    "shape",
    [
        "seed",
        "one series",
        "several series",
        "seed, then one of another series",
        "seed, then a keyed one",
    ],
)
@pytest.mark.parametrize("seed", range(5))
def test_a_batch_of_plain_items_is_counted_per_cell(shape: str, seed: int) -> None:
    """The readings for batches of plain items (see parse_feedback_batch) against the oracle."""
    items = plain_items(random.Random(seed), shape)
    assert seen(parse_feedback_batch(batch(items), MAX)) == expected_batch(items)


def test_a_prediction_batch_is_every_prediction_in_order() -> None:
    items = [{"id": "p-1", "prediction": 1}, {"id": "p-2", "prediction": 0, "model": "m",
             "version": "v", "score": 0.5, "timestamp": "1970-01-01T00:01:00Z"}]  # fmt: skip
    assert parse_prediction_batch(batch(items), MAX) == [
        Prediction("p-1", 1),
        Prediction("p-2", 0, "m", "v", 0.5, 60.0),
    ]


def test_an_empty_batch_and_a_full_one_are_fine() -> None:
    assert seen(parse_feedback_batch(batch([]), MAX)) == Expected({}, [], [])
    assert parse_prediction_batch(batch([]), MAX) == []
    full = [{"prediction": 0, "actual": 0}] * MAX
    assert seen(parse_feedback_batch(batch(full), MAX)) == Expected(
        {("default", "", 0, 0): MAX}, [], [("default", "")] * MAX
    )


@pytest.mark.parametrize(
    "parse", [parse_feedback_batch, parse_prediction_batch], ids=["feedback", "predictions"]
)
def test_too_many_items(parse: Callable[[bytes, int], object]) -> None:
    error = rejection(batch([{"id": "x", "prediction": 1, "actual": 1}] * (MAX + 1)), parse)
    assert (error.reason, error.index) == ("too_many_items", None)
    assert str(MAX) in error.message


BAD_ITEMS: list[tuple[object, str, str]] = [
    ({"prediction": 1}, "missing_fields", MISSING),
    ({"actual": 1, "prediction": None}, "missing_fields", MISSING),
    ({"prediction": 2, "actual": 1}, "invalid_value", BAD_VALUES),
    ({"prediction": 1, "actual": True}, "invalid_value", BAD_VALUES),
    ({"prediction": 1, "actual": 1, "model": ""}, "invalid_model", "Invalid model"),
    ({"prediction": 1, "actual": 1, "id": "x" * 129}, "invalid_id", "Invalid id"),
    ({"prediction": 1, "actual": 1, "score": 1.5}, "invalid_score", "Invalid score"),
    ({"prediction": 1, "actual": 1, "timestamp": "2024-01-01T00:00:00"}, "invalid_timestamp",
     "Invalid timestamp"),
    ({"prediction": 1, "actual": 1, "timestamp": "1969-12-31T23:59:59Z"}, "invalid_timestamp",
     "Invalid timestamp: before 1970"),
    ({"prediction": 1, "actual": 1, "timestamp": 1.7e12}, "invalid_timestamp",
     "Invalid timestamp: more than a day ahead"),
    ({"prediction": 1, "actual": 1, "id": "a\x00"}, "invalid_id", "Invalid id"),
    (1, "not_an_object", "Item must be a JSON object"),
    (None, "not_an_object", "Item must be a JSON object"),
    ([{"prediction": 1, "actual": 1}], "not_an_object", "Item must be a JSON object"),
]  # fmt: skip


@pytest.mark.parametrize("at", [0, 3, 9])
@pytest.mark.parametrize(("bad", "reason", "message"), BAD_ITEMS, ids=repr)
def test_the_invalid_item_is_named_by_its_index(
    bad: object, reason: str, message: str, at: int
) -> None:
    rng = random.Random(at)
    items: list[Any] = [random_feedback(rng) for _ in range(10)]
    items[at] = bad
    if reason != "missing_fields":  # (a missing field: see the test below)
        items.append({"prediction": 1, "actual": 1, "score": 7})  # a later invalid item
    error = rejection(batch(items), parse_feedback_batch)
    assert (error.reason, error.index) == (reason, at)
    assert error.message.startswith(message)


@pytest.mark.parametrize("field", ["model", "version"])
@pytest.mark.parametrize("at", [0, 5, 9])
@pytest.mark.parametrize(
    ("parse", "item"),
    [
        (parse_feedback_batch, {"prediction": 1, "actual": 0}),
        (parse_feedback_batch, {"prediction": 1, "actual": 0, "id": "p"}),
        (parse_prediction_batch, {"prediction": 1, "id": "p"}),
    ],
    ids=["plain feedback", "keyed feedback", "predictions"],
)
def test_a_bad_name_among_good_ones_is_named_by_its_index(
    parse: Callable[[bytes, int], object], item: Item, at: int, field: str
) -> None:
    """Names are checked once per distinct name, after reading (see records._decode)."""
    items = [item | {"model": "m", "version": "v1"} for _ in range(10)]
    items[at][field] = "a b"
    error = rejection(batch(items), parse)
    assert (error.reason, error.index) == (f"invalid_{field}", at)
    assert error.message.startswith(f"Invalid {field}: ")


@pytest.mark.parametrize(
    "missing", [{"prediction": 1}, {"actual": 0}, {"actual": 0, "prediction": None}]
)
def test_an_id_less_batch_names_its_item_missing_a_field(missing: Item) -> None:
    items = [{"prediction": 1, "actual": 1}] * 3 + [missing, {"prediction": 0, "actual": 1}]
    error = rejection(batch(items), parse_feedback_batch)
    assert (error.message, error.reason, error.index) == (MISSING, "missing_fields", 3)


@pytest.mark.parametrize(
    "later", [{"prediction": 3, "actual": 1}, {"prediction": 1, "actual": 1, "model": "a b"}]
)
def test_a_missing_field_is_named_before_a_later_bad_value(later: Item) -> None:
    items = [{"prediction": 1, "actual": 1}, {"actual": 1}, later]
    error = rejection(batch(items), parse_feedback_batch)
    assert (error.message, error.index) == (MISSING, 1)


def test_the_invalid_prediction_is_named_by_its_index() -> None:
    items: list[Item] = [{"id": f"p-{i}", "prediction": 1} for i in range(5)]
    items[2] = {"id": "p-2", "prediction": 1.0}
    items[4] = {"prediction": 1}
    error = rejection(batch(items), parse_prediction_batch)
    assert (error.message, error.index) == (BAD_VALUES, 2)
    error = rejection(batch(items[3:]), parse_prediction_batch)
    assert (error.message, error.index) == (MISSING, 1)


NOT_A_BATCH = {
    "a single feedback": (b'{"prediction": 1, "actual": 1}', "not_a_batch"),
    "empty object": (b"{}", "not_a_batch"),
    "misspelt": (b'{"item": []}', "not_a_batch"),
    "items a number": (b'{"items": 5}', "invalid_items"),
    "items null": (b'{"items": null}', "invalid_items"),
    "items an object": (b'{"items": {}}', "invalid_items"),
    "array": (b"[]", "not_an_object"),
    "null": (b"null", "not_an_object"),
    "string": (b'"items"', "not_an_object"),
    "empty": (b"", "malformed_json"),
    "truncated": (b'{"items": [{"prediction": 1, "actual": 1}', "malformed_json"),
    "NaN": (b'{"items": [], "x": NaN}', "malformed_json"),
    # (read unchecked by the batch's first readings, a model gave a 500)
    "invalid utf-8 in a model": (b'{"items": [{"prediction": 1, "actual": 0, '
                                 b'"model": "\xff"}]}', "invalid_utf8"),
    "invalid utf-8 ignored in an item": (b'{"items": [{"prediction": 1, "actual": 0,'
                                         b' "x": "\xff"}]}', "invalid_utf8"),
    "invalid utf-8 ignored": (b'{"items": [], "x": "\xff"}', "invalid_utf8"),
}  # fmt: skip


@pytest.mark.parametrize(("raw", "reason"), list(NOT_A_BATCH.values()), ids=list(NOT_A_BATCH))
@pytest.mark.parametrize(
    "parse", [parse_feedback_batch, parse_prediction_batch], ids=["feedback", "predictions"]
)
def test_bodies_that_are_not_a_batch(
    raw: bytes, reason: str, parse: Callable[[bytes, int], object]
) -> None:
    error = rejection(raw, parse)
    assert (error.reason, error.index) == (reason, None)
    assert error.message not in (MISSING, BAD_VALUES)
    assert "\n" not in error.message
