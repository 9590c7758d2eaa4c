"""deploy/grafana: the dashboard's structure, its thresholds against the alerts, the provisioning
files, and every panel and annotation query run against a real Prometheus scraping the service
after known feedback (labels by id with scores, refused requests, a drop that sets off drift)."""

import collections
import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import httpx
import pytest

from feedback_monitor.confusion import Counts
from tests.drift_blocks import STEADY, WORST, batch_of, blocks
from tests.integration.grafana import (
    DASHBOARD,
    DASHBOARD_PROVIDERS,
    DATASOURCE,
    DATASOURCES,
    Query,
    alert_thresholds,
    drawn_thresholds,
    finite_values,
    label_values,
    load_json,
    load_yaml,
    queries,
    rated,
    substitute,
    variables,
)
from tests.integration.helpers import CELLS, COUNTERS, serving, wait_until
from tests.integration.prometheus import (
    PROMETHEUS_CONFIG,
    RULES,
    Prometheus,
    prometheus,
    require,
    short_windows,
)

pytestmark = pytest.mark.integration

MODEL = "grafana"
SERIES = f'model="{MODEL}",version="1"'
MODEL_IS = 'model="$model"'
STEADY_COMMITS = blocks([(STEADY, 3_000)], 100, seed=11)
DROP_COMMITS = blocks([(WORST, 2_000)], 100, seed=12)
CELL_OF = {pair: cell for cell, pair in CELLS.items()}
STEP = 1.0  # the range queries' step, as Grafana's $__interval; Prometheus scrapes every second
RATE_INTERVAL = "4s"  # Grafana's $__rate_interval: max($__interval + scrape, 4 * scrape)
PER_PROCESS = ("feedback_http_", "feedback_validation_errors_total", "feedback_commit_")
"""The service's own metrics (docs/metrics.md): each process counts its own, so they are summed."""
VERSIONS = pytest.mark.parametrize("version", ["1", ".*"], ids=["one-version", "all-versions"])
"""The version variable set to one version, and to All (its allValue)."""

Sent = dict[str, collections.Counter[str]]
"""The feedback counted per version, by confusion cell."""


class Live(NamedTuple):
    api: Prometheus
    start: float
    sent: Sent


@pytest.fixture(scope="module")
def dashboard() -> Any:
    return load_json(DASHBOARD)


def test_the_dashboard_has_a_fixed_uid_a_recent_schema_and_unique_panel_ids(
    dashboard: Any,
) -> None:
    assert dashboard["uid"] == "feedback-monitor"
    assert dashboard["schemaVersion"] >= 39
    assert "id" not in dashboard  # provisioning assigns it
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 16


def test_datasource_model_and_version_variables(dashboard: Any) -> None:
    found = variables(dashboard)
    assert list(found) == ["datasource", "model", "version"]
    source, model, version = found["datasource"], found["model"], found["version"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    assert (model["type"], version["type"]) == ("query", "query")
    assert model["query"]["query"] == "label_values(true_positives_total, model)"
    assert version["query"]["query"] == f"label_values(true_positives_total{{{MODEL_IS}}}, version)"
    # All versions by default; the unversioned series has no version label, which ".*" matches.
    assert (version["includeAll"], version["allValue"]) == (True, ".*")


def test_every_panel_and_query_names_the_datasource_variable(dashboard: Any) -> None:
    for panel in dashboard["panels"]:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    for annotation in dashboard["annotations"]["list"]:
        assert annotation["datasource"] == DATASOURCE, annotation["name"]
    for name in ("model", "version"):
        assert variables(dashboard)[name]["datasource"] == DATASOURCE


def test_panels_lie_on_the_grid_without_overlapping(dashboard: Any) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, (panel["title"], taken.get((x, y)))
                taken[(x, y)] = panel["title"]


def test_each_alert_threshold_is_drawn_on_the_panels_plotting_its_ratio(dashboard: Any) -> None:
    thresholds = alert_thresholds(load_yaml(RULES))
    assert {record.split(":")[1] for record in thresholds} == {
        "feedback_accuracy",
        "feedback_f1_score",
        "feedback_label_coverage",
        "feedback_http_requests_invalid",
    }
    for record, values in thresholds.items():
        plotting = [
            panel
            for panel in dashboard["panels"]
            if any(record in target["expr"] for target in panel["targets"])
        ]
        assert plotting, record
        for panel in plotting:
            assert drawn_thresholds(panel) == values, (panel["title"], record)


def test_rates_are_of_recorded_series_the_replicas_merged(dashboard: Any) -> None:
    """A global metric's rate or increase is taken of the rules' series that merges the replicas
    first: taken per pod and merged after, it undercounts across a rollout (each pod saw part of
    the window) and can put one histogram together from the buckets of different pods."""
    recorded = {
        rule.get("record") for group in load_yaml(RULES)["groups"] for rule in group["rules"]
    }
    taken = [(query.where, name) for query in queries(dashboard) for name in rated(query.expr)]
    assert len(taken) >= 15
    of_global = [(where, name) for where, name in taken if not name.startswith(PER_PROCESS)]
    assert 0 < len(of_global) < len(taken)
    assert [(where, name) for where, name in of_global if name not in recorded] == []


def test_provisioning_files_parse_and_match_the_dashboard(dashboard: Any) -> None:
    [source] = load_yaml(DATASOURCES)["datasources"]
    assert (source["type"], source["uid"]) == ("prometheus", "feedback-monitor-prometheus")
    assert variables(dashboard)["datasource"]["current"]["value"] == source["uid"]
    scrape_interval = load_yaml(PROMETHEUS_CONFIG)["global"]["scrape_interval"]
    assert source["jsonData"]["timeInterval"] == scrape_interval
    [provider] = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


def predict(client: httpx.Client, prefix: str, count: int) -> None:
    now = time.time()
    for i in range(count):
        body = {
            **{"id": f"{prefix}-{i}", "prediction": i % 2, "model": MODEL, "version": "1"},
            **{"score": 0.2 + 0.6 * (i % 2) + 0.01 * i, "timestamp": now - 60 * (i + 1)},
        }
        assert client.post("/predictions", json=body).status_code == 201


def label(client: httpx.Client, prefix: str, indices: range, sent: Sent) -> None:
    """Ground truth for the predictions ``prefix-i``; the prediction was ``i % 2``."""
    for i in indices:
        actual = (i // 2) % 2
        response = client.post("/feedback", json={"id": f"{prefix}-{i}", "actual": actual})
        assert response.status_code == 200, response.text
        sent["1"][CELL_OF[(i % 2, actual)]] += 1


def send(client: httpx.Client, version: str, commits: Sequence[Counts], sent: Sent) -> None:
    for counts in commits:
        response = client.post("/feedback/batch", json=batch_of(counts, (MODEL, version)))
        assert response.status_code == 200, response.text
        sent[version].update({cell: getattr(counts, cell) for cell in CELLS})


def refuse(client: httpx.Client) -> None:
    """Requests the service refuses, so that the error panels have something to show."""
    assert client.post("/feedback", json={"prediction": 3, "actual": 1}).status_code == 400
    assert client.post("/feedback", content=b"nope").status_code == 415


def has(api: Prometheus, expr: str) -> bool:
    return bool(api.query(expr))


def feed(client: httpx.Client, api: Prometheus) -> Sent:
    """Known feedback in two parts, the first scraped before the second is sent: the rates and
    increases then see every counter and histogram grow, and the drop sets off drift."""
    sent: Sent = {"1": collections.Counter(), "2": collections.Counter()}
    send(client, "1", STEADY_COMMITS, sent)
    send(client, "2", STEADY_COMMITS[:5], sent)
    predict(client, "a", 20)
    label(client, "a", range(10), sent)
    refuse(client)
    first = f"feedback_labelled_predictions_total{{{SERIES}}} == 10"
    wait_until(lambda: has(api, first), what="a scrape of the first part")
    predict(client, "b", 10)
    label(client, "a", range(10, 15), sent)
    label(client, "b", range(5), sent)
    send(client, "1", DROP_COMMITS, sent)
    send(client, "2", STEADY_COMMITS[5:10], sent)
    refuse(client)
    drifted = f"sum(feedback_drift_detected_total{{{SERIES}}}) > 0"
    wait_until(lambda: has(api, drifted), what="a scrape of the drift")
    return sent


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A real Prometheus with the short variant of the rules, scraping a service fed ``feed``."""
    require("prometheus", "prometheus")
    root = tmp_path_factory.mktemp("grafana")
    (root / "prometheus").mkdir()
    rules = short_windows(RULES.read_text())
    start = time.time()
    with (
        serving(root / "service", log_path=root / "service.log") as service,
        httpx.Client(base_url=service.url, timeout=30.0) as client,
        open(root / "prometheus.log", "ab") as log,
        prometheus(root / "prometheus", service.url.removeprefix("http://"), rules, log) as api,
    ):
        yield Live(api, start, feed(client, api))


def run(live: Live, query: Query, version: str) -> list[dict[str, Any]]:
    """The result of ``query`` as Grafana would run it over the time since ``live.start``."""
    end = time.time()
    values = {
        **{"model": MODEL, "version": version, "__interval": f"{STEP:.0f}s"},
        **{"__rate_interval": RATE_INTERVAL, "__range": f"{math.ceil(end - live.start)}s"},
    }
    expr = substitute(query.expr, values)
    if query.instant:
        answer = live.api.get("/api/v1/query", query=expr, time=str(end))
    else:
        span = {"start": str(live.start), "end": str(end), "step": str(STEP)}
        answer = live.api.get("/api/v1/query_range", query=expr, **span)
    result: list[dict[str, Any]] = answer["result"]
    return result


@VERSIONS
def test_every_panel_and_annotation_query_returns_data(
    live: Live, dashboard: Any, version: str
) -> None:
    every = list(queries(dashboard))
    empty: list[str] = []

    def all_have_data() -> bool:
        empty[:] = [q.where for q in every if not finite_values(run(live, q, version))]
        return not empty

    # The rules are evaluated every second: a ratio may lag the scrape that feeds it.
    with contextlib.suppress(TimeoutError):
        wait_until(all_have_data, timeout=15.0, what="every query with data", every=0.5)
    assert empty == []
    assert len(every) >= 30


@VERSIONS
def test_the_confusion_matrix_shows_the_committed_counts(
    live: Live, dashboard: Any, version: str
) -> None:
    versions = list(live.sent) if version == ".*" else [version]
    shown = {}
    for panel in dashboard["panels"]:
        for cell, counter in COUNTERS.items():
            if panel["type"] == "stat" and counter in panel["targets"][0]["expr"]:
                [query] = [q for q in queries(dashboard) if q.where.startswith(panel["title"])]
                [sample] = run(live, query, version)
                shown[cell] = float(sample["value"][1])
    assert shown == {cell: sum(live.sent[v][cell] for v in versions) for cell in CELLS}


def test_the_variable_queries_list_the_models_and_versions(live: Live, dashboard: Any) -> None:
    found = variables(dashboard)
    answers = {}
    for name in ("model", "version"):
        path, params = label_values(found[name]["query"]["query"], {"model": MODEL})
        answers[name] = live.api.get(path, **params)
    assert MODEL in answers["model"]
    assert answers["version"] == ["1", "2"]


def test_the_drift_annotation_marks_the_detectors_that_fired(live: Live, dashboard: Any) -> None:
    [query] = [q for q in queries(dashboard) if q.where == "annotation Drift detected"]
    marked = {series["metric"]["detector"] for series in run(live, query, "1")}
    fired = live.api.query(f"feedback_drift_detected_total{{{SERIES}}} > 0")
    assert marked == {dict(labels)["detector"] for labels in fired} != set()
