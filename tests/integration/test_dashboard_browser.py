"""The built-in dashboard in headless Chromium against a real server: it shows the numbers the API
answers, follows the model picker, marks a drift on the time axis as it happens, and logs no error;
it survives a hung service and a token without the read scope, fits a phone's screen, draws what
its charts must, and tells a screen reader what changes, not each refresh.

Chromium is Debian's (``FEEDBACK_MONITOR_CHROMIUM`` to use another); without it the tests skip,
except in CI, where they fail. Each test leaves a screenshot in ``FEEDBACK_MONITOR_ARTIFACTS``
(pytest's ``tmp_path`` if unset) and prints its path.
"""

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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
from feedback_monitor.testing import ServiceProcess
from tests.drift_blocks import ERROR_DETECTORS, STEADY, WORSE, batch_of, blocks
from tests.integration.helpers import client_of, process_tree, serving, wait_until

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


# Records the text each canvas draws (uPlot draws its axes' labels on a canvas, not in the page),
# with where it lands: run before the page's scripts, in every page of a context.
RECORD_CANVAS_TEXT = """
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, x, y, ...rest) {
  const width = this.measureText(text).width;
  (this.canvas.texts ??= []).push({ text: String(text), x, align: this.textAlign, width });
  return fillText.call(this, text, x, y, ...rest);
};
"""


def poll(page: Page, script: str, arg: Any = None, timeout: float = WAIT / 1000) -> Any:
    """The first truthy value of ``script`` in the page, polled (the page's policy forbids the
    eval that Playwright's ``wait_for_function`` needs)."""
    deadline = time.monotonic() + timeout
    while not (value := page.evaluate(script, arg)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout} s: {script}")
        page.wait_for_timeout(100)
    return value


def canvas_texts(page: Page, chart: str) -> list[dict[str, Any]]:
    """What the chart's canvas has drawn as text (RECORD_CANVAS_TEXT), in device pixels, with
    the canvas's width."""
    texts: list[dict[str, Any]] = page.evaluate(
        "(chart) => { const c = document.querySelector(`${chart} canvas`);"
        " return (c.texts ?? []).map((t) => ({ ...t, canvas: c.width })); }",
        chart,
    )
    return texts


def percent(fraction: float) -> str:
    """As the page writes a fraction (JavaScript's toFixed rounds as format does but for exact
    ties, which these numbers are not)."""
    return f"{100 * fraction:.1f}%"


def accuracy_of(estimate: dict[str, float], n: int) -> str:
    """As the page writes the accuracy of the hour before or after a drift."""
    return f"{percent(estimate['value']) if n else DASH} of {n:,}"


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
        expect(page.locator(f"#cell-{cell} .count")).to_have_text(f"{value:,}", timeout=WAIT)
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
def fresh(tmp_path: Path) -> Iterator[ServiceProcess]:
    """A server of the test's own, without data. Named before ``page`` in a test's arguments, it
    stops after the page is closed, so refuses none of its reads."""
    with serving(tmp_path / "data", log_path=tmp_path / "service.log") as service:
        yield service


def client_of_service(service: ServiceProcess) -> httpx.Client:
    return httpx.Client(base_url=service.url, timeout=30.0)


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
    rows = page.locator("#drift-events tbody tr")
    expect(rows).to_have_count(len(events))
    for n, event in enumerate(events):  # a side without outcomes has no accuracy: a dash
        cells = rows.nth(n).locator("td")
        expect(cells.nth(0)).to_have_text(event["detector"])
        expect(cells.nth(2)).to_have_text(accuracy_of(event["accuracy_before"], event["n_before"]))
        expect(cells.nth(3)).to_have_text(accuracy_of(event["accuracy_after"], event["n_after"]))
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


def test_a_model_without_a_version_shows_none_chosen(fresh: ServiceProcess, page: Page) -> None:
    """The README's first curl: one feedback, of the empty version, the only one there is."""
    with client_of_service(fresh) as http:
        assert http.post("/feedback", json={"prediction": 1, "actual": 1}).status_code == 200
    page.goto(f"{fresh.url}/")
    expect(page.locator("#tile-n .value")).to_have_text("1", timeout=WAIT)
    options = page.locator("#version option")
    expect(options).to_have_text(["(none)"])
    expect(options.first).to_have_js_property("selected", True)
    expect(page.locator("#version")).to_have_value("")


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


def test_a_hung_service_is_reported_then_recovered(fresh: ServiceProcess, page: Page) -> None:
    """A service that accepts connections but answers nothing (stopped, as a hung process is):
    each read gives up after 10 s, the page says so (and announces it), then recovers."""
    with client_of_service(fresh) as http:
        send(http, CHURN, [KNOWN[CHURN]])
    page.goto(f"{fresh.url}/")
    expect(page.locator("#status")).to_have_text(re.compile(r"^Updated at "), timeout=WAIT)
    expect(page.locator("#announce")).to_have_text("")  # the first load is no news
    stopped = process_tree(fresh.pid)
    try:
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        failing = re.compile(r"^Cannot read the service \(.* gave no answer in 10 s\); retrying$")
        expect(page.locator("#status")).to_have_text(failing, timeout=30_000)
        expect(page.locator("#announce")).to_have_text(failing)
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    expect(page.locator("#status")).to_have_text(re.compile(r"^Updated at "), timeout=30_000)
    again = re.compile(r"^Reading the service again\. Updated at ")
    expect(page.locator("#announce")).to_have_text(again)


LIVE_REGIONS = (
    "[aria-live]:not([aria-live=off]), [role=status], [role=alert], [role=log], [role=timer],"
    " [role=marquee], output"
)


def test_a_screen_reader_hears_changes_of_state_not_each_refresh(
    page: Page, client: httpx.Client
) -> None:
    page.goto("/#model=fraud&version=v1")
    metrics = answer(client, FRAUD, "metrics")
    assert_shows(page, metrics)
    # One live region, empty while the page merely refreshes (an <output> is one too).
    expect(page.locator(LIVE_REGIONS)).to_have_count(1)
    page.evaluate(
        """() => { window.announced = 0;
          new MutationObserver((changes) => { window.announced += changes.length; })
            .observe(document.getElementById("announce"),
                     { childList: true, subtree: true, characterData: true }); }"""
    )
    first = page.locator("#status").text_content()
    poll(page, "(first) => document.getElementById('status').textContent !== first", first)
    second = page.locator("#status").text_content()
    poll(page, "(second) => document.getElementById('status').textContent !== second", second)
    assert page.evaluate("() => window.announced") == 0
    expect(page.locator("#announce")).to_have_text("")
    # The charts are images to assistive technologies, described in words.
    accuracy, n = percent(metrics["metrics"]["accuracy"]["value"]), metrics["n"]
    for chart, words in (
        ("#metrics-chart", f"Accuracy {accuracy}"),
        ("#volume-chart", f": {n} in all"),
    ):
        expect(page.locator(chart)).to_have_attribute("role", "img")
        expect(page.locator(chart)).to_have_attribute("aria-label", re.compile(words))


# The contrast of each element's own text with what lies behind it, by WCAG 2's formula:
# the backgrounds of its ancestors composed over white, until an opaque one.
CONTRASTS = """() => {
  const rgba = (text) => {
    const [r, g, b, a = 1] = text.match(/[\\d.]+/g).map(Number);
    return [r, g, b, a];
  };
  const over = ([r, g, b, a], [R, G, B]) => [r * a + R * (1 - a), g * a + G * (1 - a),
                                            b * a + B * (1 - a)];
  const luminance = (rgb) => {
    const [r, g, b] = rgb.map((c) => c / 255)
      .map((c) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const found = [];
  for (const element of document.body.querySelectorAll("*")) {
    const own = [...element.childNodes].some((n) => n.nodeType === 3 && n.data.trim());
    if (!own || !element.getClientRects().length || element.closest("option, select")) continue;
    const layers = [];
    for (let e = element; e; e = e.parentElement) {
      const layer = rgba(getComputedStyle(e).backgroundColor);
      if (layer[3] > 0) layers.push(layer);
      if (layer[3] === 1) break;
    }
    const back = layers.reverse().reduce((below, layer) => over(layer, below), [255, 255, 255]);
    const style = getComputedStyle(element);
    const ink = over(rgba(style.color), back);
    const [dark, light] = [luminance(ink), luminance(back)].sort();
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    found.push({ text: element.textContent.trim().slice(0, 40), large,
                 ratio: (light + 0.05) / (dark + 0.05) });
  }
  return found;
}"""


def test_every_text_is_legible(page: Page, client: httpx.Client) -> None:
    """WCAG AA: 4.5:1 for text, 3:1 for large text."""
    page.goto("/#model=fraud&version=v1")
    assert_shows(page, answer(client, FRAUD, "metrics"))
    contrasts = page.evaluate(CONTRASTS)
    assert len(contrasts) > 50
    poor = [c for c in contrasts if c["ratio"] < (3 if c["large"] else 4.5)]
    assert poor == []


def test_the_volume_axis_is_as_wide_as_its_labels(fresh: ServiceProcess, page: Page) -> None:
    page.add_init_script(RECORD_CANVAS_TEXT)
    with client_of_service(fresh) as http:
        send(http, CHURN, [Counts(tp=10_000)])  # one step of 10,000: "10,000" on the y axis
    page.goto(f"{fresh.url}/")
    expect(page.locator("#tile-n .value")).to_have_text("10,000", timeout=WAIT)
    poll(
        page,
        "() => document.querySelector('#volume-chart canvas').texts"
        "?.some((t) => t.text === '10,000')",
    )
    for text in canvas_texts(page, "#volume-chart"):  # every label within the canvas
        left = {"right": text["x"] - text["width"], "center": text["x"] - text["width"] / 2}
        start = left.get(text["align"], text["x"])
        assert start >= 0, text
        assert start + text["width"] <= text["canvas"], text


def test_the_page_fits_a_narrow_screen(fresh: ServiceProcess, page: Page) -> None:
    """No sideways scroll of the page at 320 px, with drift events (their table scrolls in its
    panel), every detector's pill and a model named with 64 characters."""
    long_name = "a-model-whose-name-is-as-long-as-names-may-be-sixty-four-letters"
    assert len(long_name) == 64
    with client_of_service(fresh) as http:
        send(http, DRIFTING, STREAM)
        send(http, (long_name, "v1"), [KNOWN[FRAUD]])
        assert answer(http, DRIFTING, "drift")["events"]
    for width in (320, 375):
        page.set_viewport_size({"width": width, "height": 800})
        for hash_ in (f"model={long_name}", "model=drifting&version=v1"):
            page.goto(f"{fresh.url}/#{hash_}")
            expect(page.locator("#status")).to_have_text(re.compile("^Updated"), timeout=WAIT)
            if "drifting" in hash_:
                expect(page.locator("#drift-events tbody tr td").first).to_have_text(
                    re.compile("adwin|ddm|page_hinkley")
                )
            sizes = page.evaluate(
                """() => ({ page: document.documentElement.scrollWidth,
                  right: Math.max(...[...document.querySelectorAll("body *")]
                    .filter((e) => !e.closest(".scroll"))
                    .map((e) => e.getBoundingClientRect().right)) })"""
            )
            assert sizes["page"] <= width, (width, hash_, sizes)
            assert sizes["right"] <= width, (width, hash_, sizes)


ACCURACY_PIXELS = """() => {
  const canvas = document.querySelector("#metrics-chart canvas");
  const copy = document.createElement("canvas");
  [copy.width, copy.height] = [canvas.width, canvas.height];
  const context = copy.getContext("2d", { willReadFrequently: true });
  context.drawImage(canvas, 0, 0);
  const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
  let found = 0;
  for (let i = 0; i < data.length; i += 4) {  // the accuracy's blue, #1d4ed8
    const [r, g, b, a] = data.slice(i, i + 4);
    if (a > 200 && Math.abs(r - 29) + Math.abs(g - 78) + Math.abs(b - 216) < 60) found++;
  }
  return found;
}"""


def test_a_lone_step_is_drawn_at_a_narrow_width(page: Page, client: httpx.Client) -> None:
    """One step with feedback between steps without has no line to draw: its point is drawn."""
    page.set_viewport_size({"width": 320, "height": 800})
    page.goto("/#model=churn&version=")
    assert_shows(page, answer(client, CHURN, "metrics"))  # one commit: one step
    points = answer(client, CHURN, "series")["points"]
    assert len(points) == 1
    assert poll(page, ACCURACY_PIXELS) > 0


def test_a_metric_without_a_denominator_is_a_dash(page: Page, client: httpx.Client) -> None:
    """The API gives 0.0 (within 0 to 1) where a denominator is zero: the page a dash."""
    predictions = [{"id": f"q{n}", "prediction": 1, "model": "queued"} for n in range(3)]
    assert client.post("/predictions/batch", json={"items": predictions}).status_code == 201
    send(client, ("silent", ""), [Counts(tn=3, fn=2)])  # predicts 0 only: no precision
    page.goto("/#model=queued&version=")
    more = page.locator("#more-metrics tbody tr")
    expect(more).to_have_count(6, timeout=WAIT)
    for n in range(6):
        expect(more.nth(n).locator("td")).to_have_text([DASH, ""])
    for name in ("accuracy", "precision", "recall", "f1_score"):
        expect(page.locator(f"#tile-{name} .value")).to_have_text(DASH)
    coverage = page.locator("#labels tr", has_text="Label coverage").locator("td")
    expect(coverage).to_have_text("0.0%")  # 0 of 3 stored predictions labelled

    page.goto("/#model=silent&version=")
    tiles = {"accuracy": "60.0%", "precision": DASH, "recall": "0.0%", "f1_score": "0.0%"}
    for name, text in tiles.items():
        expect(page.locator(f"#tile-{name} .value")).to_have_text(text, timeout=WAIT)
    expect(page.locator("#tile-precision .interval")).to_have_text("")
    matthews = page.locator("#more-metrics tr", has_text="Matthews").locator("td")
    expect(matthews.first).to_have_text(DASH)
    specificity = page.locator("#more-metrics tr", has_text="Specificity").locator("td")
    expect(specificity.first).to_have_text("100.0%")
    expect(coverage).to_have_text(DASH)  # no prediction stored: no coverage


def test_the_latest_version_is_the_last_in_natural_order(page: Page, client: httpx.Client) -> None:
    for version in ("", "v9", "v10"):
        send(client, ("ranker", version), [KNOWN[CHURN]])
    page.goto("/#model=ranker")
    expect(page.locator("#version")).to_have_value("v10", timeout=WAIT)
    options = page.locator("#version option")
    expect(options).to_have_text(["(none)", "v9", "v10"])
    expect(page).to_have_url(re.compile(r"#model=ranker&version=v10&"))
    page.goto("/#model=ranker&version=")  # a version named in the address is kept...
    expect(page.locator("#version")).to_have_value("", timeout=WAIT)
    page.goto("/#model=ranker")  # ...and none named is the latest, also after another
    expect(page.locator("#version")).to_have_value("v10", timeout=WAIT)
    page.select_option("#model", "fraud")
    expect(page.locator("#version")).to_have_value("v1", timeout=WAIT)
    page.select_option("#model", "ranker")
    expect(page.locator("#version")).to_have_value("v10", timeout=WAIT)


def test_times_are_local_iso_and_name_their_zone(
    browser: Browser, client: httpx.Client, artifacts: Path
) -> None:
    """In a day-first locale, a zone half an hour off whole hours: every date is YYYY-MM-DD
    HH:MM:SS, as the chart's axis is, and names the zone by its offset."""
    clock_series = ("clock", "v1")
    send(client, clock_series, STREAM)
    events = answer(client, clock_series, "drift")["events"]
    assert events
    zone = ZoneInfo("America/St_Johns")
    context = browser.new_context(
        base_url=str(client.base_url), locale="en-GB", timezone_id=str(zone)
    )
    page = context.new_page()
    page.add_init_script(RECORD_CANVAS_TEXT)
    page.goto("/#model=clock&version=v1")

    def local(seconds: float) -> str:
        moment = datetime.fromtimestamp(seconds, zone)
        offset = moment.strftime("%z")
        return f"{moment:%Y-%m-%d %H:%M:%S} UTC{offset[:3]}:{offset[3:]}"

    rows = page.locator("#drift-events tbody tr")
    expect(rows).to_have_count(len(events), timeout=WAIT)
    for n, event in enumerate(events):
        expect(rows.nth(n).locator("th")).to_have_text(local(event["time"]))
    marker = page.locator("#metrics-chart .drift-marker").first
    expect(marker).to_have_attribute("title", re.compile(re.escape(local(events[0]["time"]))))
    now = local(time.time())
    offset = now.rsplit(" ", 1)[1]
    expect(page.locator("#status")).to_have_text(
        re.compile(rf"^Updated at \d\d:\d\d:\d\d {re.escape(offset)}$")
    )
    texts = {t["text"] for t in canvas_texts(page, "#metrics-chart")}
    assert f"local time, {offset}" in texts
    ticks = texts - {f"local time, {offset}"} - {f"{p}%" for p in (0, 25, 50, 75, 100)}
    assert ticks, texts
    for tick in ticks:
        assert re.fullmatch(r"\d\d:\d\d|\d{4}-\d\d-\d\d", tick), tick
    page.screenshot(path=artifacts / "test_times_are_local_iso_and_name_their_zone.png")
    context.close()


def test_the_series_has_a_point_a_minute_over_an_hour(page: Page) -> None:
    """The page asks the series for a range of the window's length, so the server's default
    step gives about 60 points (not 30 of 2 minutes, for the hour snapped out to 61 minutes)."""
    with (
        page.expect_response(lambda r: "/metrics?" in r.url, timeout=WAIT) as window,
        page.expect_response(lambda r: "/series?" in r.url, timeout=WAIT) as points,
    ):
        page.goto("/#model=fraud&version=v1&window=1h")
    metrics, series = window.value.json(), points.value.json()
    assert series["step"] == 60
    assert 60 <= (series["end"] - series["start"]) / series["step"] <= 61
    # The chart spans the window of the tiles.
    assert (series["start"], series["end"]) == (metrics["start"], metrics["end"])


def test_a_token_without_the_read_scope_is_forgotten_and_another_asked(
    browser: Browser, tmp_path: Path
) -> None:
    writer, reader = "dashboard-write-token-7f3a", "dashboard-read-token-2c9e"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{writer} write\n{reader} read\n")
    with client_of(tmp_path, "--token-file", str(tokens), "--protect-reads") as protected:
        protected.headers["Authorization"] = f"Bearer {writer}"
        send(protected, CHURN, [KNOWN[CHURN]])
        protected.headers["Authorization"] = f"Bearer {reader}"
        metrics = answer(protected, CHURN, "metrics")
        for kept in (None, writer):  # asked for, or kept in the tab from an earlier load
            context = browser.new_context(base_url=str(protected.base_url))
            page = context.new_page()
            if kept:
                page.add_init_script(f"sessionStorage.setItem('feedback-monitor-token', '{kept}')")
            answers = [] if kept else [writer]
            answers.append(reader)
            asked: list[str] = []

            def answer_with(
                dialog: Dialog, answers: list[str] = answers, asked: list[str] = asked
            ) -> None:
                asked.append(dialog.message)
                dialog.accept(answers.pop(0))

            page.on("dialog", answer_with)
            page.goto("/")
            assert_shows(page, metrics)
            assert answers == []
            assert "lacks the read scope" in asked[-1]
            context.close()


def test_a_rate_limit_below_a_refreshs_reads_is_waited_for(
    browser: Browser, tmp_path: Path
) -> None:
    """At two requests a second, a refresh's four reads take turns as the 429s ask."""
    with client_of(tmp_path, "--rate-limit", "2") as limited:
        send(limited, CHURN, [KNOWN[CHURN]])
        read: list[httpx.Response] = []

        def metrics_read() -> bool:  # the limit is two a second: the test's reads wait too
            read.append(limited.get(f"/api/v1/models/{CHURN[0]}/metrics", params={"version": ""}))
            return read[-1].is_success

        wait_until(metrics_read, what="the metrics, within the rate limit")
        metrics = read[-1].json()
        context = browser.new_context(base_url=str(limited.base_url))
        page = context.new_page()
        limited_reads: list[str] = []
        page.on("response", lambda r: limited_reads.append(r.url) if r.status == 429 else None)
        page.goto("/")
        assert_shows(page, metrics)
        expect(page.locator("#status")).to_contain_text("Updated at", timeout=20_000)
        assert limited_reads  # the limit was met, and waited out
        context.close()
