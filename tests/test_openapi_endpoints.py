"""Issue 3's endpoints in the OpenAPI document, and their answers checked against it: batches,
predictions, joins, repeats, conflicts, the series cap and /api/v1/models."""

from pathlib import Path

import httpx
import pytest

from feedback_monitor.settings import SECRETS, Settings
from feedback_monitor.store.sqlite import SQLiteStore
from tests.asgi import BATCH_LIMIT, DOC, MAX_ITEMS, assert_documented, exchange, get, post
from tests.stores import ThreadedStore


def batch(*items: object, path: str = "/feedback/batch") -> httpx.Request:
    return post({"items": list(items)}, path=path)


def predictions(*items: object) -> httpx.Request:
    return batch(*items, path="/predictions/batch")


def predict(**fields: object) -> httpx.Request:
    return post({"id": "p-1", "prediction": 1, **fields}, path="/predictions")


def model(name: str) -> httpx.Request:
    return post({**ONE, "model": name})


FULL = {"prediction": 1, "actual": 0, "model": "m", "version": "v1", "id": "f-1", "score": 0.9,
        "timestamp": "2024-01-01T00:00:00Z"}  # fmt: skip
ONE = {"prediction": 1, "actual": 1}
JOIN = {"id": "p-1", "actual": 0}
TWO_SERIES = (model("a"), model("b"))  # the cap of the app under test
# Requests in turn; the last one's status, and the batch index its error names.
P_A, P_B, P_C = ({"id": x, "prediction": 1, "model": x} for x in "abc")
CASES: dict[str, tuple[tuple[httpx.Request, ...], int, int | None]] = {
    "feedback fields": ((post(FULL),), 200, None),
    "feedback repeat": ((post(FULL), post(FULL)), 200, None),
    "feedback bad model": ((post({**ONE, "model": ""}),), 400, None),
    "feedback naive time": ((post({**ONE, "timestamp": "2024-01-01T00:00:00"}),), 400, None),
    "feedback conflict": ((post(FULL), post({**FULL, "actual": 1})), 409, None),
    "join": ((predict(), post(JOIN)), 200, None),
    "join unknown id": ((post(JOIN),), 404, None),
    "join contradicting": ((predict(), post({**JOIN, "prediction": 0})), 409, None),
    "feedback cap": ((*TWO_SERIES, model("c")), 422, None),
    "prediction": ((predict(score=0.5, timestamp=1.7e9),), 201, None),
    "prediction repeat": ((predict(), predict()), 201, None),
    "prediction no id": ((post({"prediction": 1}, path="/predictions"),), 400, None),
    "prediction conflict": ((predict(), predict(prediction=0)), 409, None),
    "prediction score conflict": ((predict(score=0.5), predict(score=0.25)), 409, None),
    "prediction score left out": ((predict(score=0.5), predict()), 201, None),
    "prediction score added": ((predict(), predict(score=0.5)), 409, None),
    "prediction repeat later": ((predict(score=0.5, timestamp=1.7e9), predict(score=0.5)), 201,
                                None),
    "prediction cap": ((*TWO_SERIES, predict(model="c")), 422, None),
    "prediction 415": ((post(b"{}", {}, "/predictions"),), 415, None),
    "batch": ((predict(), batch(ONE, JOIN, {**ONE, "id": "f"})), 200, None),
    "batch repeat": ((batch(FULL), batch(FULL, ONE)), 200, None),
    "batch invalid item": ((batch(ONE, ONE, {"prediction": 1}),), 400, 2),
    "batch not a batch": ((post(ONE, path="/feedback/batch"),), 400, None),
    "batch unknown id": ((batch(ONE, JOIN),), 404, 1),
    "batch conflict": ((post(FULL), batch(ONE, {**FULL, "actual": 1})), 409, 1),
    "batch body too large": ((batch({**ONE, "pad": "x" * BATCH_LIMIT}),), 413, None),
    "batch 415": ((post(b"{}", {"content-type": "text/json"}, "/feedback/batch"),), 415, None),
    "prediction batch": ((predictions(P_A, {"id": "b", "prediction": 0}),), 201, None),
    "prediction batch repeat": ((predictions(P_A), predictions(P_A)), 201, None),
    "prediction batch invalid item": ((predictions(P_A, {"id": "b"}),), 400, 1),
    "prediction batch conflict": ((predictions(P_A, {**P_A, "prediction": 0}),), 409, 1),
    # a is stored; b takes the last place; c finds none: the index is c's.
    "prediction batch cap": ((model("a"), predictions(P_A, P_B, P_C)), 422, 2),
    "models empty": ((get("/api/v1/models"),), 200, None),
    "models unknown parameter": ((get("/api/v1/models?foo=1"),), 400, None),
    "models": ((predict(model="a"), predict(id="p-2"), post(JOIN), get("/api/v1/models")), 200,
               None),
}  # fmt: skip


def run(*requests: httpx.Request, data_dir: Path) -> list[httpx.Response]:
    return exchange(ThreadedStore(SQLiteStore(data_dir)), data_dir, *requests)


@pytest.mark.parametrize("name", list(CASES))
def test_answers_match_their_documented_schema(tmp_path: Path, name: str) -> None:
    requests, status, index = CASES[name]
    *setup, response = run(*requests, data_dir=tmp_path)
    assert all(earlier.is_success for earlier in setup), [r.text for r in setup]
    assert response.status_code == status, response.text
    assert_documented(requests[-1], response)
    if status >= 400:
        assert response.json().get("index") == index


def test_repeats_say_duplicate_and_batches_count_them(tmp_path: Path) -> None:
    *_, repeat, again, prediction = run(
        post(FULL),
        post(FULL),
        batch(FULL, ONE, {**FULL, "id": "f-2"}),
        predict(),
        data_dir=tmp_path,
    )
    assert repeat.json()["duplicate"] is True
    assert again.json() | {"metrics": None} == {
        "success": True, "accepted": 2, "duplicates": 1, "metrics": None,
    }  # fmt: skip
    assert [(m["model"], m["version"]) for m in again.json()["metrics"]] == [
        ("default", ""),
        ("m", "v1"),
    ]
    assert prediction.json() == {"success": True}


@pytest.mark.parametrize(
    "request_",
    [
        batch(*[ONE] * (MAX_ITEMS + 1)),
        predictions(*[{"id": "a", "prediction": 1}] * (MAX_ITEMS + 1)),
    ],
    ids=["feedback", "predictions"],
)
def test_too_many_items_is_413(tmp_path: Path, request_: httpx.Request) -> None:
    (response,) = run(request_, data_dir=tmp_path)
    assert response.status_code == 413


def test_the_models_answer_holds_every_series(tmp_path: Path) -> None:
    *_, response = run(*CASES["models"][0], data_dir=tmp_path)
    zero = {"accuracy": 0.0, "precision": 0.0, "recall": 0.0, "f1_score": 0.0}
    assert response.json()["models"] == [
        {"model": "a", "version": "", "counts": {"tp": 0, "tn": 0, "fp": 1, "fn": 0},
         "metrics": zero,
         "predictions": {"stored": 1, "labelled": 1, "pending": 0, "expired": 0,
                         "label_coverage": 1.0}},
        {"model": "default", "version": "", "counts": {"tp": 0, "tn": 0, "fp": 0, "fn": 0},
         "metrics": zero,
         "predictions": {"stored": 1, "labelled": 0, "pending": 1, "expired": 0,
                         "label_coverage": 0.0}},
    ]  # fmt: skip


def test_a_repeated_prediction_is_a_duplicate_only_with_the_same_score(tmp_path: Path) -> None:
    *_, same, other = run(
        predict(score=0.5, timestamp=1.7e9),
        predict(score=0.5),  # a retry without its time: the first time stays
        predict(score=0.25),
        data_dir=tmp_path,
    )
    assert (same.status_code, same.json()) == (201, {"success": True, "duplicate": True})
    assert (other.status_code, other.json()) == (409, {"error": "Conflicting prediction for id"})


def test_the_models_endpoint_refuses_an_unknown_parameter(tmp_path: Path) -> None:
    (response,) = run(get("/api/v1/models?foo=1"), data_dir=tmp_path)
    assert (response.status_code, response.json()) == (
        400,
        {"error": "Invalid query parameter 'foo': unknown; this endpoint takes none"},
    )


WRITES = {"/feedback": "200", "/feedback/batch": "200", "/predictions": "201",
          "/predictions/batch": "201"}  # fmt: skip


@pytest.mark.parametrize(("path", "ok"), list(WRITES.items()))
def test_the_write_endpoints_document_their_answers(path: str, ok: str) -> None:
    operation = DOC["paths"][path]["post"]
    assert operation["requestBody"]["required"] is True
    assert {ok, "400", "409", "413", "415", "422", "503"} <= set(operation["responses"])
    assert not ({"200", "201"} - {ok}) & set(operation["responses"])
    # Only a feedback can name an id that is not stored.
    assert ("404" in operation["responses"]) == path.startswith("/feedback")


def test_every_endpoint_of_issue_3_is_documented() -> None:
    assert {path: set(item) for path, item in DOC["paths"].items() if path in WRITES} == {
        path: {"post"} for path in WRITES
    }
    assert set(DOC["paths"]["/api/v1/models"]) == {"get"}
    assert set(DOC["paths"]["/api/v1/models"]["get"]["responses"]) >= {"200"}


def test_the_config_answer_is_the_settings_in_force(tmp_path: Path) -> None:
    retention = "minute=2h,hour=30d,day=forever"
    (response,) = exchange(
        ThreadedStore(SQLiteStore(tmp_path)), tmp_path, get("/api/v1/config"), retention=retention
    )
    config = response.json()
    assert response.status_code == 200
    assert config["retention"] == "minute=2h,hour=30d,day=forever"
    assert config["max_series"] == 2  # tests.asgi's small cap
    assert config["prediction_ttl"] == "P30D"
    assert set(config) == set(Settings.model_fields) - SECRETS
