"""``feedback-monitor report`` against a real service: its JSON carries the API's answers, its HTML
and Markdown the same numbers, its HTML renders in headless Chromium without a request, and its
errors are one line, with exit status 2 for a bad flag and 1 for another failure.

Outcomes are sent with their prediction times on days in the past, so that the prediction view
spreads them over several days (the arrival view puts them all today). Chromium is Debian's
(``FEEDBACK_MONITOR_CHROMIUM`` to use another); without it the browser test skips, except in CI,
where it fails. The screenshot goes to ``FEEDBACK_MONITOR_ARTIFACTS`` (pytest's ``tmp_path`` if
unset).
"""

import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from feedback_monitor.cli import main
from feedback_monitor.confusion import Counts
from feedback_monitor.drift.watch import SeriesWatch
from feedback_monitor.report.numbers import count, day, estimate, ratio
from feedback_monitor.schemas import Estimate
from feedback_monitor.testing import free_port
from feedback_monitor.windows import DAY, floor
from tests.drift_blocks import STEADY, WORST, batch_of, blocks, found
from tests.integration.helpers import client_of
from tests.integration.prometheus import missing

pytestmark = pytest.mark.integration

CHROMIUM = Path(os.environ.get("FEEDBACK_MONITOR_CHROMIUM", "/usr/bin/chromium"))
DESKTOP = {"width": 1200, "height": 900}
FRAUD = ("fraud", "v1")
COSTS = {"fraud": {"tp": 10.0, "fp": -2.0, "fn": -25.0}}
PAST = {4: Counts(tp=9, tn=7, fp=2, fn=2), 3: Counts(tp=5, tn=5, fp=4, fn=6), 1: Counts(3, 8, 1, 0)}
"""Outcomes of fraud v1 by days before today (by prediction time); none two days ago."""
DROP = blocks([(STEADY, 1_500), (WORST, 1_000)], 100, seed=11)  # today, a drift in it
PREDICTIONS, LABELLED = 6, 2  # fraud v1 predictions stored today, and how many are labelled


@contextlib.contextmanager
def chromium_page(**options: Any) -> Iterator[Page]:
    """A page of a headless Chromium (Debian's), closed at the end."""
    if not CHROMIUM.exists():
        missing(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield browser.new_page(**options)
        finally:
            browser.close()


def timed_batch(counts: Counts, predicted: float) -> dict[str, Any]:
    """A /feedback/batch of fraud v1 outcomes whose predictions were made at ``predicted``."""
    items = batch_of(counts, FRAUD)["items"]
    return {"items": [{**item, "timestamp": predicted, "score": 0.5} for item in items]}


@pytest.fixture(scope="module")
def today() -> float:
    return float(floor(time.time(), DAY))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, today: float) -> Iterator[httpx.Client]:
    root = tmp_path_factory.mktemp("report")
    with client_of(root, "--costs", json.dumps(COSTS)) as http:
        for before, counts in PAST.items():
            answer = http.post("/feedback/batch", json=timed_batch(counts, today - before * DAY))
            assert answer.status_code == 200, answer.text
        for counts in DROP:
            assert http.post("/feedback/batch", json=batch_of(counts, FRAUD)).status_code == 200
        other = batch_of(Counts(1, 1, 1, 1), ("fraud", "v2"))
        assert http.post("/feedback/batch", json=other).status_code == 200
        predictions = [
            {"id": f"p{n}", "prediction": n % 2, "model": FRAUD[0], "version": FRAUD[1]}
            for n in range(PREDICTIONS)
        ]
        assert http.post("/predictions/batch", json={"items": predictions}).status_code == 201
        for n in range(LABELLED):
            assert http.post("/feedback", json={"id": f"p{n}", "actual": 1}).status_code == 200
        yield http


def period(today: float) -> list[str]:
    """Flags of the six whole days to today, by prediction time."""
    first = datetime.fromtimestamp(today - 5 * DAY, UTC).date().isoformat()
    last = datetime.fromtimestamp(today, UTC).date().isoformat()
    return ["--since", first, "--until", last, "--time", "prediction"]


def arguments(client: httpx.Client, out: str, *flags: str) -> list[str]:
    """The command line of a report of fraud v1 from ``client``'s service into ``out``."""
    series = ("--model", "fraud", "--version", "v1", "--url", str(client.base_url))
    return ["report", *series, "--out", out, *flags]


def report(client: httpx.Client, out: Path, *flags: str) -> Path:
    """``feedback-monitor report`` of fraud v1, run in this process; the file it wrote."""
    main(arguments(client, str(out), *flags))
    return out


def api(client: httpx.Client, path: str, **params: str | float) -> Any:
    answer = client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def metrics(client: httpx.Client, today: float) -> Any:
    """The API's window of fraud v1 over the period of ``period(today)``."""
    window = {"start": today - 5 * DAY, "end": today + DAY}
    return api(client, "/api/v1/models/fraud/metrics", version="v1", time="prediction", **window)


def points(client: httpx.Client, today: float) -> Any:
    """The API's days of fraud v1 over the period of ``period(today)``."""
    window = {"start": today - 5 * DAY, "end": today + DAY, "step": DAY}
    series = api(client, "/api/v1/models/fraud/series", version="v1", time="prediction", **window)
    return series["points"]


def today_counts() -> Counts:
    counts = sum(DROP, Counts())
    return counts + Counts(tp=1, fn=LABELLED - 1)  # p0 predicted 0 and p1 1, both actually 1


def test_the_json_report_is_the_api_answers(
    client: httpx.Client, today: float, tmp_path: Path
) -> None:
    document = json.loads(report(client, tmp_path / "r.json", *period(today)).read_text())
    start, end = today - 5 * DAY, today + DAY
    assert document["summary"] == metrics(client, today)
    assert document["days"] == points(client, today)
    drift = api(client, "/api/v1/models/fraud/drift", version="v1", limit=100)
    events = [e for e in drift["events"] if start <= e["time"] < end]
    assert document["drift"] == {
        "detectors": drift["detectors"],
        "events": events,
        "complete": True,
    }
    assert document["config"] == api(client, "/api/v1/config")
    models = api(client, "/api/v1/models")["models"]
    assert [document["predictions"]] == [m["predictions"] for m in models if m["version"] == "v1"]
    assert (document["model"], document["version"], document["time"]) == (*FRAUD, "prediction")


def test_the_json_report_holds_what_was_sent(
    client: httpx.Client, today: float, tmp_path: Path
) -> None:
    document = json.loads(report(client, tmp_path / "r.json", *period(today)).read_text())
    sent = {today - before * DAY: counts for before, counts in PAST.items()}
    sent[today] = today_counts()
    assert {p["start"]: Counts(**p["counts"]) for p in document["days"]} == sent
    assert document["summary"]["n"] == sum(c.total for c in sent.values())
    events = document["drift"]["events"]
    assert len(events) == len(found(SeriesWatch(), DROP)) > 0
    assert all(today <= e["time"] < today + DAY for e in events)
    predictions = document["predictions"]
    assert (predictions["stored"], predictions["labelled"]) == (PREDICTIONS, LABELLED)
    assert predictions["label_coverage"] == LABELLED / PREDICTIONS


def test_the_arrival_view_puts_every_outcome_today(
    client: httpx.Client, today: float, tmp_path: Path
) -> None:
    flags = [*period(today)[:4], "--format", "json"]
    document = json.loads(report(client, tmp_path / "arrival.out", *flags).read_text())
    assert [p["start"] for p in document["days"]] == [today]
    assert document["days"][0]["n"] == document["summary"]["n"]
    assert document["time"] == "arrival"


class Tables(HTMLParser):
    """The cells of each table of a page, by the id of the section that holds it."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.sections: dict[str, list[list[str]]] = {}
        self.section, self.cell = "", ""
        self.in_cell = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self.section = dict(attrs)["id"] or ""
            self.sections[self.section] = []
        elif tag == "tr":
            self.sections[self.section].append([])
        elif tag in ("td", "th"):
            self.in_cell, self.cell = True, ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self.sections[self.section][-1].append(self.cell)
            self.in_cell = False

    def handle_data(self, data: str) -> None:
        if self.in_cell:
            self.cell += data


def rows(tables: Tables, section: str) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in tables.sections[section][1:]}


def test_the_html_report_shows_the_api_numbers(
    client: httpx.Client, today: float, tmp_path: Path
) -> None:
    html = report(client, tmp_path / "r.html", *period(today)).read_text()
    answer = metrics(client, today)
    tables = Tables(html)
    summary = rows(tables, "summary")
    accuracy = answer["metrics"]["accuracy"]
    assert summary["Accuracy"] == [ratio(accuracy[k]) for k in ("value", "low", "high")]
    assert summary["Value (cost matrix)"][0] == f"{answer['value']:,.2f}"
    c = answer["counts"]
    assert rows(tables, "confusion")["Actual 1"] == [
        count(c["tp"]),
        count(c["fn"]),
        count(c["tp"] + c["fn"]),
    ]
    days = points(client, today)
    daily = rows(tables, "days")
    assert list(daily) == [day(p["start"]) for p in days]
    for p in days:
        assert daily[day(p["start"])][:2] == [
            count(p["n"]),
            estimate(Estimate(**p["metrics"]["accuracy"])),
        ]
        assert rows(tables, "day-confusion")[day(p["start"])][:2] == [
            count(p["counts"]["tp"]),
            count(p["counts"]["fp"]),
        ]
    assert rows(tables, "coverage") == {count(PREDICTIONS): [count(LABELLED), "4", "0", "0.3333"]}
    assert len(tables.sections["drift"]) == 1 + len(found(SeriesWatch(), DROP))
    assert html.count("<svg") == 2


def test_the_command_writes_markdown(client: httpx.Client, today: float) -> None:
    command = [sys.executable, "-m", "feedback_monitor"]
    command += arguments(client, "-", "--format", "md", *period(today))
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    answer = metrics(client, today)
    accuracy = answer["metrics"]["accuracy"]
    line = f"| Accuracy | {' | '.join(ratio(accuracy[k]) for k in ('value', 'low', 'high'))} |"
    assert line in done.stdout.splitlines()
    assert done.stdout.startswith("# Audit report: fraud version v1\n")


@pytest.mark.parametrize(
    ("flags", "message", "status"),
    [
        (["--model", "nope"], "unknown model or version at {url}: 'nope' version ''", 1),
        (["--model", "fraud", "--version", "v9"], "unknown model or version at {url}: 'fraud'", 1),
        (["--model", "fraud", "--since", "May 1"], "--since: not an RFC 3339 date or date-time", 2),
        (
            ["--model", "fraud", "--until", "2024-05-01T10:00:00"],
            "--until: '2024-05-01T10:00:00' needs",
            2,
        ),
        (["--model", "fraud", "--out", "{out}.pdf"], "--out '{out}.pdf': give --format", 2),
        (
            ["--model", "bad name"],
            "the service refused a flag: Invalid path parameter 'model': names are 1 to 64",
            2,
        ),
        (["--model", "fraud", "--url", "http://[::1"], "--url: Invalid", 2),
        (
            ["--model", "fraud", "--url", "http://127.0.0.1:{port}"],
            "cannot reach the service at",
            1,
        ),
        (
            ["--model", "fraud", "--version", "v1", "--out", "{out}/none/r.md"],
            "cannot write {out}/none/r.md",
            1,
        ),
    ],
)
def test_an_error_is_one_line_with_its_exit_status(
    client: httpx.Client,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
    status: int,
) -> None:
    url = str(client.base_url)
    out = tmp_path / "r.html"
    argv = ["report", "--url", url, "--out", str(out), *flags]
    with pytest.raises(SystemExit) as exited:
        main([arg.format(port=free_port(), out=tmp_path) for arg in argv])
    assert exited.value.code == status
    stderr = capsys.readouterr().err
    expected = message.format(url=url, out=tmp_path)
    assert stderr.startswith(f"feedback-monitor report: error: {expected}"), stderr
    assert stderr.count("\n") == 1
    assert not out.exists()


def test_the_html_report_renders_in_chromium_without_a_request(
    client: httpx.Client, today: float, tmp_path: Path
) -> None:
    html = report(client, tmp_path / "report.html", *period(today))
    artifacts = Path(os.environ.get("FEEDBACK_MONITOR_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / "report.png"
    requests: list[str] = []
    with chromium_page(java_script_enabled=False, viewport=DESKTOP) as page:
        page.on("request", lambda request: requests.append(request.url))
        page.goto(html.as_uri(), wait_until="load")
        charts = [page.locator("svg.chart").nth(n).bounding_box() for n in range(2)]
        accuracy = page.locator("#summary tbody tr").first.inner_text()
        page.screenshot(path=screenshot, full_page=True)
    assert requests == [html.as_uri()]
    assert all(box is not None and box["width"] > 500 and box["height"] > 150 for box in charts)
    assert accuracy.split("\t")[0] == "Accuracy"
    assert screenshot.stat().st_size > 20_000  # a page of tables and charts, not a blank one
    sys.stdout.write(f"screenshot: {screenshot}\n")


def test_the_time_axis_labels_fit_without_overlapping_in_chromium(
    client: httpx.Client, today: float, tmp_path: Path
) -> None:
    """A period that does not start at midnight labels its steps with times, twice as wide."""
    since = datetime.fromtimestamp(today - 27 * DAY + 7 * 3600, UTC).isoformat()
    html = report(client, tmp_path / "report.html", "--since", since, "--time", "prediction")
    with chromium_page(java_script_enabled=False, viewport=DESKTOP) as page:
        page.goto(html.as_uri(), wait_until="load")
        charts = []
        for n in range(2):
            chart = page.locator("svg.chart").nth(n)
            labels = chart.locator("text.tick-x")
            boxes = [labels.nth(i).bounding_box() for i in range(labels.count())]
            texts = labels.all_text_contents()
            charts.append((chart.bounding_box(), boxes, texts))
    for frame, boxes, texts in charts:
        assert frame is not None
        assert len(boxes) >= 3
        assert all(text.endswith(" UTC") for text in texts)  # each label carries its time
        assert all(box is not None for box in boxes)
        edges = [(box["x"], box["x"] + box["width"]) for box in boxes if box is not None]
        assert edges[0][0] >= frame["x"]
        assert edges[-1][1] <= frame["x"] + frame["width"]
        assert all(left[1] < right[0] for left, right in itertools.pairwise(edges))


def test_a_rate_limited_service_is_waited_for(tmp_path: Path) -> None:
    """The report's reads outrun a rate limit of two a second: it waits as the 429s ask."""
    with client_of(tmp_path, "--rate-limit", "2") as http:
        sent = http.post("/feedback", json={"prediction": 1, "actual": 1, "model": "m"})
        assert sent.status_code == 200, sent.text
        out = tmp_path / "r.json"
        main(["report", "--model", "m", "--url", str(http.base_url), "--out", str(out)])
    assert json.loads(out.read_text())["summary"]["n"] == 1


@pytest.mark.parametrize("model", ["a.b", "...", ".x"])
def test_a_model_named_with_dots_is_reported(
    client: httpx.Client, tmp_path: Path, model: str
) -> None:
    sent = client.post("/feedback", json={"prediction": 0, "actual": 0, "model": model})
    assert sent.status_code == 200, sent.text
    out = tmp_path / "r.json"
    main(["report", "--model", model, "--url", str(client.base_url), "--out", str(out)])
    document = json.loads(out.read_text())
    assert (document["model"], document["summary"]["model"]) == (model, model)
    assert document["summary"]["counts"]["tn"] >= 1


def test_the_report_names_the_service_without_its_password(
    client: httpx.Client, tmp_path: Path
) -> None:
    url = str(client.base_url).replace("://", "://alice:s3cret@")
    for kind in ("json", "md", "html"):
        out = tmp_path / f"r.{kind}"
        main(["report", "--model", "fraud", "--version", "v1", "--url", url, "--out", str(out)])
        text = out.read_text()
        assert str(client.base_url).rstrip("/") in text
        assert "s3cret" not in text
        assert "alice" not in text


def test_a_period_of_more_days_than_the_api_gives_points_is_reported_by_weeks(
    client: httpx.Client, tmp_path: Path
) -> None:
    """Since 1990, more days than the API gives points (it answered 400 to a step of a day)."""
    flags = ("--since", "1990-01-01", "--time", "prediction")
    document = json.loads(report(client, tmp_path / "r.json", *flags).read_text())
    assert document["step"] == 7 * DAY
    assert sum(p["n"] for p in document["days"]) == document["summary"]["n"] > 0
    starts = [p["start"] for p in document["days"]]
    assert all((start - starts[0]) % (7 * DAY) == 0 for start in starts)
    text = report(client, tmp_path / "r.md", *flags).read_text()
    assert "## Per week\n" in text


def test_the_html_report_fits_a_phone_in_chromium(
    client: httpx.Client, today: float, tmp_path: Path
) -> None:
    """No sideways scroll of the page at 420 px: a wide table scrolls in its own box."""
    html = report(client, tmp_path / "report.html", *period(today))
    with chromium_page(viewport={"width": 420, "height": 900}) as page:
        page.goto(html.as_uri(), wait_until="load")
        page_width = page.evaluate("document.documentElement.scrollWidth")
        table = page.locator("#days table").bounding_box()
    assert page_width <= 420
    assert table is not None
    assert table["width"] > 420  # the per-day table is wider than the screen, and scrolls
