"""GET /api/v1/models/{model}/drift and the drift metrics of a real server fed a drop through
/feedback/batch: the events, statuses and accuracy around each event as the stream sent says,
the same after kill -9 or a graceful restart, and the detectors going on from there."""

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from feedback_monitor.confusion import Counts
from feedback_monitor.drift.watch import DETECTORS, SeriesWatch
from tests.drift_blocks import (
    ERROR_DETECTORS,
    STEADY,
    WORSE,
    WORST,
    Batch,
    Found,
    around,
    batch_of,
    blocks,
    found,
)
from tests.integration.helpers import client_of, scrape, serving, stop
from tests.integration.windows_stream import read

pytestmark = pytest.mark.integration

SERIES = ("drift-api", "v1")
DRIFT = "/api/v1/models/{model}/drift"
SIZE = 100  # outcomes per batch, each batch one commit (they are sent one after another)
STREAM = blocks([(STEADY, 5_000), (WORSE, 3_000)], SIZE, seed=3)
MORE = blocks([(WORST, 2_000)], SIZE, seed=5)
# Up to the commit that found the last drift: its detectors still show 2 (drift) afterwards.
TO_LAST_DRIFT = STREAM[: found(SeriesWatch(), STREAM)[-1].commit + 1]


class Sender:
    """Sends commits as batches and keeps what a fresh watch fed the same commits finds."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.batches: list[Batch] = []
        self.watch = SeriesWatch()
        self.drifts: list[Found] = []

    def send(self, commits: Sequence[Counts]) -> None:
        for counts in commits:
            sent = time.time()
            response = self.client.post("/feedback/batch", json=batch_of(counts, SERIES))
            self.batches.append(Batch(counts, sent, time.time()))
            assert response.status_code == 200, response.text
            self.drifts += found(self.watch, [counts], len(self.batches) - 1)

    def statuses(self) -> dict[str, int]:
        return self.watch.statuses()

    def detections(self) -> dict[str, int]:
        return {name: sum(d.detector == name for d in self.drifts) for name in DETECTORS}


def assert_answer(answer: dict[str, Any], sender: Sender, now: float) -> None:
    """The statuses, and every event with its detector, time, statistic and accuracy around."""
    assert (answer["model"], answer["version"]) == SERIES
    detections = sender.detections()
    assert answer["detectors"] == [
        {"detector": name, "status": status, "detections": detections[name]}
        for name, status in sender.statuses().items()
    ]
    events, drifts = answer["events"], sender.drifts[::-1]
    assert len(events) == len(drifts) > 0
    assert [e["time"] for e in events] == sorted((e["time"] for e in events), reverse=True)
    for event, drift in zip(events, drifts, strict=True):
        batch = sender.batches[drift.commit]
        assert event["detector"] == drift.detector
        assert event["statistic"] == pytest.approx(drift.statistic, rel=1e-12)
        assert batch.sent <= event["time"] <= batch.acked
        context = {k: v for k, v in event.items() if k.startswith(("accuracy", "n_"))}
        assert context in around(sender.batches, drift.commit, event["time"], now)


def check(client: httpx.Client, sender: Sender) -> dict[str, Any]:
    """The answer of GET /drift (checked against the OpenAPI document and the stream)."""
    now = time.time()
    answer: dict[str, Any] = read(client, DRIFT, SERIES[0], {"version": SERIES[1], "limit": "100"})
    assert_answer(answer, sender, now)
    return answer


def drift_samples(client: httpx.Client) -> dict[tuple[str, str], float]:
    """The series' drift counters and statuses on /metrics, by name and detector."""
    wanted = {("model", SERIES[0]), ("version", SERIES[1])}
    return {
        (name, dict(labels)["detector"]): value
        for (name, labels), value in scrape(client).items()
        if name.startswith("feedback_drift_") and wanted <= set(labels)
    }


def expected_samples(sender: Sender) -> dict[tuple[str, str], float]:
    return {
        **{("feedback_drift_detected_total", d): n for d, n in sender.detections().items()},
        **{("feedback_drift_status", d): s for d, s in sender.statuses().items()},
    }


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A server of its own for the module, with default settings."""
    with client_of(tmp_path_factory.mktemp("drift")) as http:
        yield http


@pytest.fixture(scope="module")
def sender(client: httpx.Client) -> Sender:
    sent = Sender(client)
    sent.send(TO_LAST_DRIFT)
    return sent


def test_the_drop_is_listed_newest_first_with_the_accuracy_around_it(
    client: httpx.Client, sender: Sender
) -> None:
    answer = check(client, sender)
    assert {e["detector"] for e in answer["events"]} == ERROR_DETECTORS
    first_after_the_drop = sender.batches[5_000 // SIZE].sent
    assert min(e["time"] for e in answer["events"]) >= first_after_the_drop
    for event in answer["events"]:  # the window after holds the drop, the one before less of it
        assert event["accuracy_after"]["value"] < 0.9


def test_limit_gives_the_latest_events(client: httpx.Client, sender: Sender) -> None:
    events = check(client, sender)["events"]
    for limit in (1, 2):
        answer = read(client, DRIFT, SERIES[0], {"version": SERIES[1], "limit": str(limit)})
        assert answer["events"] == events[:limit]
    default = read(client, DRIFT, SERIES[0], {"version": SERIES[1]})
    assert default["events"] == events[:20]


def test_metrics_count_the_events_per_detector_and_show_the_statuses(
    client: httpx.Client, sender: Sender
) -> None:
    answer = check(client, sender)
    samples = drift_samples(client)
    assert samples == expected_samples(sender)
    assert 2 in sender.statuses().values()
    for detector in answer["detectors"]:
        name = detector["detector"]
        events = sum(e["detector"] == name for e in answer["events"])
        assert samples["feedback_drift_detected_total", name] == events
        assert samples["feedback_drift_status", name] == detector["status"]


@pytest.mark.parametrize(
    "limit",
    [
        "0",
        "101",
        "x",
        "",
        "-1",
        "1.5",
        "²",  # str.isdigit() takes it, int() does not
    ],
)
def test_a_bad_limit_is_refused_naming_it(client: httpx.Client, sender: Sender, limit: str) -> None:
    answer = read(client, DRIFT, SERIES[0], {"version": SERIES[1], "limit": limit}, status=400)
    assert "'limit'" in answer["error"]


@pytest.mark.parametrize(
    ("model", "params"),
    [("unknown", {"version": SERIES[1]}), (SERIES[0], {"version": "v0"}), (SERIES[0], {})],
)
def test_an_unknown_series_is_404(
    client: httpx.Client, sender: Sender, model: str, params: dict[str, str]
) -> None:
    answer = read(client, DRIFT, model, params, status=404)
    assert answer["error"] == "Unknown model or version"


@pytest.mark.parametrize("how", ["kill", "terminate"])
def test_a_restart_keeps_the_drifts_and_the_detectors_go_on(tmp_path: Path, how: str) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "service.log"
    with serving(data_dir, log_path=log) as service:
        with httpx.Client(base_url=service.url, timeout=30.0) as client:
            sender = Sender(client)
            sender.send(STREAM)
            answer, samples = check(client, sender), drift_samples(client)
        stop(service, how)
    with (
        serving(data_dir, log_path=log) as service,
        httpx.Client(base_url=service.url, timeout=30.0) as client,
    ):
        assert read(client, DRIFT, SERIES[0], {"version": SERIES[1], "limit": "100"}) == answer
        assert drift_samples(client) == samples
        sender.client = client
        sender.send(MORE)  # 0.7 to 0.5: found again, from the state before the restart
        assert len(check(client, sender)["events"]) > len(answer["events"])
        assert drift_samples(client) == expected_samples(sender)
