"""GET /metrics: valid text (promtool), OpenMetrics on request, values that survive restarts."""

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.integration.helpers import (
    COUNTERS,
    GAUGES,
    feedback,
    parse_openmetrics_samples,
    parse_samples,
    scrape,
    seed_samples,
    serving,
    stop,
)
from tests.integration.views import series_state

pytestmark = pytest.mark.integration

OPENMETRICS = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"
MIX = {"tp": 5, "tn": 4, "fp": 2, "fn": 1}


def promtool(exposition: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def send_mix(client: httpx.Client) -> None:
    for cell, count in MIX.items():
        for _ in range(count):
            assert client.post("/feedback", json=feedback(cell)).status_code == 200


@pytest.fixture
def text(client: httpx.Client) -> str:
    """The text exposition before any feedback."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def assert_promtool_accepts(client: httpx.Client) -> None:
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    checked = promtool(response.text)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


def test_promtool_accepts_the_text_format_before_and_after_feedback(
    client: httpx.Client,
) -> None:
    assert_promtool_accepts(client)
    send_mix(client)
    # Every kind of label the service's own metrics get: rejections, a 404, a 415.
    assert client.post("/feedback", json={"prediction": 2, "actual": 1}).status_code == 400
    assert client.post("/feedback", content=b"{}").status_code == 415
    assert client.get("/nope").status_code == 404
    assert_promtool_accepts(client)


def send_to_several_series(client: httpx.Client) -> None:
    """Series with every allowed kind of name: feedback, predictions joined, waiting, alone."""
    for model, version in (("a.b:c-d_E9", "1.0"), ("a.b:c-d_E9", ""), ("other", "2024-01")):
        body = {"prediction": 1, "actual": 0, "model": model, "version": version}
        assert client.post("/feedback", json=body).status_code == 200
    for id_ in ("joined", "waiting"):
        prediction = {"id": id_, "prediction": 1, "model": "other", "timestamp": 1}
        assert client.post("/predictions", json=prediction).status_code == 201
    assert client.post("/feedback", json={"id": "joined", "actual": 1}).status_code == 200
    only = {"id": "only", "prediction": 0, "model": "predicted-only"}  # counters at 0, no gauges
    assert client.post("/predictions", json=only).status_code == 201


def test_promtool_accepts_the_exposition_of_several_series(client: httpx.Client) -> None:
    send_to_several_series(client)
    assert_promtool_accepts(client)


def test_both_formats_show_the_same_series_state(client: httpx.Client) -> None:
    send_to_several_series(client)
    om = client.get("/metrics", headers={"accept": OPENMETRICS}).text
    both = [series_state(samples) for samples in (scrape(client), parse_openmetrics_samples(om))]
    assert len(both[0]) > 50
    assert both[0] == both[1]


def test_openmetrics_when_the_accept_header_asks(client: httpx.Client) -> None:
    send_mix(client)
    response = client.get("/metrics", headers={"accept": OPENMETRICS})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    assert "\n# TYPE true_positives counter\n" in response.text
    assert 'true_positives_total{model="default",version=""} 5.0\n' in response.text


@pytest.mark.parametrize(
    "accept", ["application/openmetrics-text; version=abc", "text/plain; version=1.x"]
)
def test_an_accept_header_with_a_malformed_version_gets_the_text_format(
    client: httpx.Client, accept: str
) -> None:
    """prometheus_client's negotiation raises on such a version; a scrape still gets an answer."""
    send_mix(client)
    response = client.get("/metrics", headers={"accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'true_positives_total{model="default",version=""} ' in response.text
    assert not response.text.endswith("# EOF\n")


def test_four_gauges_absent_before_the_first_feedback(text: str) -> None:
    present = {name for name, _ in parse_samples(text)}
    assert present.isdisjoint(GAUGES)


def test_four_counters_read_zero_before_the_first_feedback(text: str) -> None:
    samples = parse_samples(text)
    for name in COUNTERS.values():
        values = [value for (sample, _), value in samples.items() if sample == name]
        assert values == [0.0], name


def test_values_after_feedback(client: httpx.Client) -> None:
    send_mix(client)
    samples = seed_samples(scrape(client))
    series = (("model", "default"), ("version", ""))
    tp, tn, fp, fn = MIX["tp"], MIX["tn"], MIX["fp"], MIX["fn"]
    assert samples == {
        ("true_positives_total", series): tp,
        ("true_negatives_total", series): tn,
        ("false_positives_total", series): fp,
        ("false_negatives_total", series): fn,
        ("accuracy", series): pytest.approx((tp + tn) / (tp + tn + fp + fn)),
        ("precision", series): pytest.approx(tp / (tp + fp)),
        ("recall", series): pytest.approx(tp / (tp + fn)),
        ("f1_score", series): pytest.approx(2 * tp / (2 * tp + fp + fn)),
    }


@pytest.mark.parametrize("how", ["terminate", "kill"])
def test_values_survive_a_restart(tmp_path: Path, how: str) -> None:
    data, log = tmp_path / "data", tmp_path / "service.log"
    with serving(data, log_path=log) as service, httpx.Client(base_url=service.url) as client:
        send_mix(client)
        send_to_several_series(client)
        before = series_state(scrape(client))
        stop(service, how)
    with serving(data, log_path=log) as service, httpx.Client(base_url=service.url) as client:
        after = series_state(scrape(client))
    # The default series and four named ones with feedback, one with a prediction only.
    assert len(seed_samples(before)) == 5 * (len(COUNTERS) + len(GAUGES)) + len(COUNTERS)
    assert after == before  # predictions and label delays included
