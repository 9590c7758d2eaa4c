"""Per-series views of a real server's state, and what scikit-learn says they should be.

A series is a (model, version) pair. The server shows its state twice, on ``/metrics`` and in
``GET /api/v1/models``; the tests check both against the feedback they sent.
"""

import collections
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from tests.integration.helpers import COUNTERS, GAUGES, Labels, Samples, process_tree, scrape

Series = tuple[str, str]
Pair = tuple[int, int]
"""A feedback's (prediction, actual)."""

DEFAULT: Series = ("default", "")
PREDICTION_METRICS = (
    "feedback_predictions_total",
    "feedback_labelled_predictions_total",
    "feedback_expired_predictions_total",
    "feedback_pending_predictions",
    "feedback_label_coverage",
)
DELAY = "feedback_label_delay_seconds"


class Sent(collections.defaultdict[Series, list[Pair]]):
    """Every feedback counted so far, per series, in order."""

    def __init__(self) -> None:
        super().__init__(list)


def named(series: Series) -> dict[str, object]:
    """The fields of a request body that name ``series``."""
    return {"model": series[0], "version": series[1]}


def labels(series: Series, **extra: str) -> Labels:
    return tuple(sorted({"model": series[0], "version": series[1], **extra}.items()))


def series_on(samples: Samples, names: Iterable[str] = COUNTERS.values()) -> set[Series]:
    """Every series that has a sample of one of ``names``."""
    wanted = set(names)
    found = set()
    for name, pairs in samples:
        if name in wanted:
            as_dict = dict(pairs)
            found.add((as_dict["model"], as_dict["version"]))
    return found


def series_state(samples: Samples) -> Samples:
    """The samples that describe series (they carry a model label): none of the telemetry."""
    return {key: value for key, value in samples.items() if "model" in dict(key[1])}


def stored_state(client: httpx.Client) -> tuple[Samples, dict[Series, dict[str, Any]]]:
    """Everything the server shows of what it stores: to check that nothing changed."""
    return series_state(scrape(client)), models(client)


def answer(response: httpx.Response) -> tuple[int, Any]:
    """A JSON answer's status and body."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    return response.status_code, response.json()


def counters(samples: Samples, series: Series) -> dict[str, float | None]:
    """The four confusion counters of ``series`` (None where a sample is absent)."""
    return {cell: samples.get((name, labels(series))) for cell, name in COUNTERS.items()}


def gauges(samples: Samples, series: Series) -> dict[str, float | None]:
    return {name: samples.get((name, labels(series))) for name in GAUGES}


def delay_histogram(samples: Samples, series: Series) -> dict[str, float]:
    """The label-delay histogram of ``series``: cumulative buckets by bound, count and sum."""
    histogram = {
        dict(pairs)["le"]: value
        for (name, pairs), value in samples.items()
        if name == DELAY + "_bucket" and labels(series, le=dict(pairs)["le"]) == pairs
    }
    for part in ("count", "sum"):
        histogram[part] = samples[(f"{DELAY}_{part}", labels(series))]
    return histogram


def assert_predictions(
    client: httpx.Client, series: Series, stored: int, labelled: int, expired: int
) -> None:
    """/metrics and /api/v1/models agree on what became of the series' stored predictions."""
    samples, pending = scrape(client), stored - labelled - expired
    on_metrics = {name: samples.get((name, labels(series))) for name in PREDICTION_METRICS}
    assert on_metrics == {
        "feedback_predictions_total": stored,
        "feedback_labelled_predictions_total": labelled,
        "feedback_expired_predictions_total": expired,
        "feedback_pending_predictions": pending,
        "feedback_label_coverage": pytest.approx(labelled / stored) if stored else None,
    }, series
    assert models(client)[series]["predictions"] == {
        "stored": stored,
        "labelled": labelled,
        "pending": pending,
        "expired": expired,
        "label_coverage": pytest.approx(labelled / stored if stored else 0.0),
    }, series


def cells(pairs: Sequence[Pair]) -> dict[str, int]:
    return {
        "tp": pairs.count((1, 1)),
        "tn": pairs.count((0, 0)),
        "fp": pairs.count((1, 0)),
        "fn": pairs.count((0, 1)),
    }


def sklearn_metrics(pairs: Sequence[Pair]) -> dict[str, float]:
    """The four metrics by scikit-learn, 0.0 where a denominator is zero."""
    y_pred = [prediction for prediction, _ in pairs]
    y_true = [actual for _, actual in pairs]
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0)),
        "f1_score": float(f1_score(y_true, y_pred, zero_division=0)),
    }


def models(client: httpx.Client) -> dict[Series, dict[str, Any]]:
    """``GET /api/v1/models``, by series."""
    response = client.get("/api/v1/models")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    listed = response.json()["models"]
    by_series = {(entry["model"], entry["version"]): entry for entry in listed}
    assert len(by_series) == len(listed), "a series listed twice"
    return by_series


def assert_series_match(client: httpx.Client, sent: Mapping[Series, Sequence[Pair]]) -> None:
    """/metrics and /api/v1/models show, per series sent to, scikit-learn's view of it."""
    samples, listed = scrape(client), models(client)
    for series, pairs in sent.items():
        counts = cells(pairs)
        expected = sklearn_metrics(pairs)
        assert counters(samples, series) == counts, series
        assert gauges(samples, series) == _approx(expected), series
        assert listed[series]["counts"] == counts, series
        assert listed[series]["metrics"] == _approx(expected), series


def assert_metrics_of(metrics: object, pairs: Sequence[Pair]) -> None:
    """An answer's ``metrics`` object: exactly scikit-learn's over ``pairs``."""
    assert isinstance(metrics, dict)
    assert sorted(metrics) == sorted(GAUGES)
    assert all(type(value) is float for value in metrics.values()), metrics
    assert metrics == _approx(sklearn_metrics(pairs))


def _approx(expected: dict[str, float]) -> object:
    return pytest.approx(expected, rel=1e-12, abs=0.0)


def tree_rss_bytes(pid: int) -> int:
    """The resident memory of ``pid`` and its descendants (the store runs in a child)."""
    total = 0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:  # it ended while we looked
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024  # reported in kB
    return total
