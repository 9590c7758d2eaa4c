"""The built-in dashboard in headless Chromium against a real server: it shows the numbers the API
answers, follows the model picker, marks a drift on the time axis as it happens, and logs no error.

Chromium is Debian's (``FEEDBACK_MONITOR_CHROMIUM`` to use another); without it the tests skip,
except in CI, where they fail. Each test leaves a screenshot in ``FEEDBACK_MONITOR_ARTIFACTS``
(pytest's ``tmp_path`` if unset) and prints its path.
"""

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Page,
    Response,
    expect,
    sync_playwright,
)

from feedback_monitor.confusion import Counts
from tests.drift_blocks import ERROR_DETECTORS, STEADY, WORSE, batch_of, blocks
from tests.integration.helpers import client_of

pytestmark = pytest.mark.integration

CHROMIUM = Path(os.environ.get("FEEDBACK_MONITOR_CHROMIUM", "/usr/bin/chromium"))
WAIT = 15_000  # ms for the page to show something: it polls the API every 3 s
FRAUD, CHURN, DRIFTING = ("fraud", "v1"), ("churn", ""), ("drifting", "v1")
KNOWN = {FRAUD: Counts(tp=6, tn=3, fp=1, fn=2), CHURN: Counts(tp=1, tn=5, fp=2, fn=2)}
DASH = "\u2013"  # between the bounds of an interval on the page
PENDING = 5  # predictions of FRAUD stored and never labelled
# The stream of the drift API's test: steady at accuracy 0.9, then 0.7; its detectors find the
# drop in the second part only.
STREAM = blocks([(STEADY, 5_000), (WORSE, 3_000)], 100, seed=3)
STEADY_PART, DROP = STREAM[:50], STREAM[50:]


def percent(fraction: float) -> str:
    """As the page writes a fraction (JavaScript's toFixed rounds as format does but for exact
    ties, which these numbers are not)."""
    return f"{100 * fraction:.1f}%"


def send(client: httpx.Client, series: tuple[str, str], commits: list[Counts]) -> None:
    for counts in commits:
        response = client.post("/feedback/batch", json=batch_of(counts, series))
        assert response.status_code == 200, response.text


def answer(client: httpx.Client, series: tuple[str, str], what: str) -> dict[str, Any]:
    model, version = series
    response = client.get(f"/api/v1/models/{model}/{what}", params={"version": version})
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def assert_shows(page: Page, metrics: dict[str, Any]) -> None:
    """The tiles and the confusion matrix show this answer of the metrics API."""
    for cell, value in metrics["counts"].items():
        expect(page.locator(f"#cell-{cell} output")).to_have_text(f"{value:,}", timeout=WAIT)
    expect(page.locator("#tile-n .value")).to_have_text(f"{metrics['n']:,}")
    for name in ("accuracy", "precision", "recall", "f1_score"):
        estimate, tile = metrics["metrics"][name], page.locator(f"#tile-{name}")
        expect(tile.locator(".value")).to_have_text(percent(estimate["value"]))
        if "low" in estimate:
            interval = f"{percent(estimate['low'])} {DASH} {percent(estimate['high'])}"
            expect(tile.locator(".interval")).to_have_text(interval)


def assert_marked(page: Page, chart: str, drifts: int) -> None:
    """The chart shows ``drifts`` markers, each within its plot (on the time axis)."""
    markers = page.locator(f"{chart} .drift-marker")
    expect(markers).to_have_count(drifts, timeout=WAIT)
    plot = page.locator(f"{chart} .u-over").bounding_box()
    assert plot is not None
    for n in range(drifts):
        box = markers.nth(n).bounding_box()
        assert box is not None
        assert plot["x"] <= box["x"] <= plot["x"] + plot["width"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        missing = f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A server of its own for the module, with the known feedback of two models."""
    with client_of(tmp_path_factory.mktemp("dashboard")) as http:
        for series, counts in KNOWN.items():
            send(http, series, [counts])
        predictions = [{"id": f"p{n}", "prediction": 1, "model": FRAUD[0], "version": FRAUD[1]}
                       for n in range(PENDING)]  # fmt: skip
        assert http.post("/predictions/batch", json={"items": predictions}).status_code == 201
        yield http


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("FEEDBACK_MONITOR_ARTIFACTS", tmp_path))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def page(
    browser: Browser, client: httpx.Client, artifacts: Path, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """A fresh page on the server; afterwards its screenshot is kept, and it must have reported
    no console error or warning, no uncaught exception and no failed request."""
    context = browser.new_context(
        base_url=str(client.base_url), viewport={"width": 1280, "height": 1200}
    )
    opened, problems = context.new_page(), []

    def console(message: ConsoleMessage) -> None:
        if message.type in {"error", "warning"}:
            problems.append(f"console {message.type}: {message.text}")

    def response(answer: Response) -> None:
        if answer.status >= 400:
            problems.append(f"{answer.status} {answer.url}")

    opened.on("console", console)
    opened.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    opened.on("response", response)
    yield opened
    screenshot = artifacts / f"{request.node.name}.png"
    opened.screenshot(path=screenshot, full_page=True)
    print(f"screenshot: {screenshot}")  # noqa: T201 (where to look, in the test's output)
    context.close()
    assert problems == []


def test_the_page_shows_the_numbers_the_api_answers(page: Page, client: httpx.Client) -> None:
    page.goto("/#model=fraud&version=v1")
    metrics = answer(client, FRAUD, "metrics")
    assert Counts(**metrics["counts"]) == KNOWN[FRAUD]
    assert_shows(page, metrics)
    expect(page.locator("#model")).to_have_value("fraud")
    expect(page.locator("#version")).to_have_value("v1")
    pending = page.locator("#labels tr", has_text="pending a label").locator("td")
    expect(pending).to_have_text(str(PENDING))
    expect(page.locator("#status")).to_have_text(re.compile(r"^Updated at "))


def test_switching_model_shows_the_other_models_numbers(page: Page, client: httpx.Client) -> None:
    page.goto("/#model=fraud&version=v1")
    assert_shows(page, answer(client, FRAUD, "metrics"))
    page.select_option("#model", "churn")
    metrics = answer(client, CHURN, "metrics")
    assert Counts(**metrics["counts"]) == KNOWN[CHURN]
    assert_shows(page, metrics)
    expect(page.locator("#version")).to_have_value("")
    expect(page).to_have_url(re.compile(r"#model=churn&version=&"))
    page.select_option("#model", "fraud")
    assert_shows(page, answer(client, FRAUD, "metrics"))


def test_a_drop_in_accuracy_shows_drift_markers_as_it_happens(
    page: Page, client: httpx.Client
) -> None:
    send(client, DRIFTING, STEADY_PART)
    page.goto("/#model=drifting&version=v1")
    assert_shows(page, answer(client, DRIFTING, "metrics"))
    expect(page.locator("#drift-events tbody")).to_have_text("No drift found")
    expect(page.locator(".drift-marker")).to_have_count(0)
    send(client, DRIFTING, DROP)  # while the page polls
    events = answer(client, DRIFTING, "drift")["events"]
    assert {event["detector"] for event in events} == ERROR_DETECTORS
    for chart in ("#metrics-chart", "#volume-chart"):
        assert_marked(page, chart, len(events))
    for event in events:
        marker = page.locator(f"#metrics-chart .drift-marker[title^='{event['detector']}: drift']")
        expect(marker).to_have_count(1)
    expect(page.locator("#drift-events tbody tr")).to_have_count(len(events))
    assert_shows(page, answer(client, DRIFTING, "metrics"))


def test_an_empty_service_waits_then_fills_in_live(page: Page, tmp_path: Path) -> None:
    with client_of(tmp_path) as fresh:
        page.goto(f"{fresh.base_url}/")
        expect(page.locator("#empty")).to_be_visible(timeout=WAIT)
        expect(page.locator("#status")).to_have_text("Waiting for feedback")
        send(fresh, CHURN, [KNOWN[CHURN]])
        expect(page.locator("#dashboard")).to_be_visible(timeout=WAIT)
        expect(page.locator("#empty")).to_be_hidden()
        assert_shows(page, answer(fresh, CHURN, "metrics"))


def test_with_protected_reads_the_page_asks_for_a_read_token(
    browser: Browser, tmp_path: Path
) -> None:
    token = "dashboard-read-token"
    with client_of(tmp_path, "--api-token", token, "--protect-reads") as protected:
        protected.headers["Authorization"] = f"Bearer {token}"
        send(protected, CHURN, [KNOWN[CHURN]])
        assert httpx.get(f"{protected.base_url}/api/v1/models").status_code == 401
        context = browser.new_context(base_url=str(protected.base_url))
        page = context.new_page()
        asked: list[str] = []

        def answer_with_token(dialog: Dialog) -> None:
            asked.append(dialog.message)
            dialog.accept(token)

        page.on("dialog", answer_with_token)
        page.goto("/")  # the page itself is public: it holds no data
        assert_shows(page, answer(protected, CHURN, "metrics"))
        assert len(asked) == 1  # asked once, then kept for the tab
        context.close()
