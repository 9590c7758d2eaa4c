"""The audit report rendered from fixed data: numbers, escaping, charts, and the API's errors."""

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from feedback_monitor.confusion import Counts
from feedback_monitor.query import MAX_POINTS, BadParameter, points_query
from feedback_monitor.report import (
    FORMATS,
    ReportError,
    markdown,
    output_format,
    page,
    steps,
    write,
)
from feedback_monitor.report.dates import moment, period
from feedback_monitor.report.document import DAY_STEP, Drift, Report, to_json
from feedback_monitor.report.gather import EVENT_LIMIT, Api, _retry_after, client, gather
from feedback_monitor.report.numbers import amount, count, day, estimate, ratio
from feedback_monitor.report.svg import accuracy_chart, volume_chart
from feedback_monitor.schemas import (
    CountsBody,
    DetectorStatus,
    DriftAnswer,
    DriftEventAnswer,
    Estimate,
    Models,
    ModelSummary,
    PointAnswer,
    PredictionStats,
    SeriesAnswer,
    WindowAnswer,
    WindowMetrics,
    encode,
    model_summary,
)
from feedback_monitor.series import SeriesState
from feedback_monitor.windows import Retention

MAY_1 = 1714521600.0  # 2024-05-01T00:00:00Z
HOSTILE = '<script>alert("x")</script> & | _*'
Cells = tuple[int, int, int, int]


def point(start: float, cells: Cells) -> PointAnswer:
    counts = Counts(*cells)
    return PointAnswer(start, counts.total, CountsBody(*cells), WindowMetrics.of(counts))


def event(at: float, detector: str = "ddm") -> DriftEventAnswer:
    before, after = Counts(40, 40, 10, 10), Counts(20, 20, 30, 30)
    return DriftEventAnswer(
        at, detector, 3.25, _accuracy(before), before.total, _accuracy(after), after.total
    )


def _accuracy(counts: Counts) -> Estimate:
    return Estimate(counts.accuracy, *counts.intervals()["accuracy"])


DAYS = [point(MAY_1, (8, 9, 2, 1)), point(MAY_1 + DAY_STEP, (5, 4, 3, 3))]
DAYS += [point(MAY_1 + 3 * DAY_STEP, (1, 1, 0, 0))]  # after a day without feedback


def report(
    days: list[PointAnswer] = DAYS,
    events: list[DriftEventAnswer] | None = None,
    config: dict[str, Any] | None = None,
    complete: bool = True,
) -> Report:
    cells = [_cells(p) for p in days]
    counts = Counts(*(sum(column) for column in zip(*cells, strict=True))) if cells else Counts()
    summary = WindowAnswer(
        "fraud",
        "v1",
        "prediction",
        MAY_1,
        MAY_1 + 5 * DAY_STEP,
        3600,
        counts.total,
        CountsBody(*counts.fields),
        WindowMetrics.of(counts),
        -12.5,
        None,
    )
    detectors = [DetectorStatus("ddm", 2, 1), DetectorStatus(HOSTILE, 0, 0)]
    return Report(
        MAY_1 + 6 * DAY_STEP,
        "http://127.0.0.1:5000",
        "fraud",
        "v1",
        "prediction",
        summary,
        days,
        PredictionStats(10, 7, 2, 1, 0.7),
        Drift(detectors, [event(MAY_1 + 1.5 * DAY_STEP)] if events is None else events, complete),
        {"host": "127.0.0.1", "costs": {"*": {"tp": 1.0}}} if config is None else config,
    )


def _cells(p: PointAnswer) -> Cells:
    return (p.counts.tp, p.counts.tn, p.counts.fp, p.counts.fn)


def svgs(html: str) -> list[ET.Element]:
    return [ET.fromstring(svg) for svg in re.findall(r"<svg\b.*?</svg>", html, re.DOTALL)]


# Numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ratio(2 / 3), "0.6667"),
        (ratio(1.0), "1.0000"),
        (ratio(None), "-"),
        (estimate(Estimate(0.5, 0.25, 0.75)), "0.5000 (0.2500, 0.7500)"),
        (estimate(Estimate(0.5)), "0.5000"),
        (count(1234567), "1,234,567"),
        (amount(-1234.5), "-1,234.50"),
        (amount(None), "-"),
        (day(MAY_1), "2024-05-01"),
        (day(MAY_1 + 90), "2024-05-01 00:01 UTC"),
    ],
)
def test_numbers_are_written_one_way(text: str, expected: str) -> None:
    assert text == expected


@pytest.mark.parametrize("render", [page.render, markdown.render])
def test_html_and_markdown_carry_the_same_numbers(render: Callable[[Report], str]) -> None:
    text = render(report())
    s = report().summary
    for name in ("accuracy", "precision", "recall", "specificity", "baseline_accuracy"):
        value = getattr(s.metrics, name)
        assert ratio(value.value) in text
        assert ratio(value.low) in text
        assert ratio(value.high) in text
    for p in DAYS:
        assert estimate(p.metrics.accuracy) in text
        assert day(p.start) in text
    assert "-12.50" in text  # the cost matrix's value
    assert "0.7000" in text  # label coverage


def test_a_metric_without_a_denominator_is_a_dash_not_a_zero() -> None:
    """The API gives 0.0 where a denominator is zero; the report says there is no value."""
    negatives = point(MAY_1, (0, 3, 0, 0))  # no actual or predicted positive: no precision...
    empty = event(MAY_1 + DAY_STEP)
    empty = msgspec.structs.replace(empty, n_before=0, accuracy_before=Estimate(0.0, 0.0, 1.0))
    document = msgspec.structs.replace(
        report(days=[negatives], events=[empty]),
        predictions=PredictionStats(0, 0, 0, 0, 0.0),
    )
    text = markdown.render(document)
    row = next(line for line in text.splitlines() if line.startswith("| 2024-05-01 |"))
    assert [cell.strip() for cell in row.strip("|").split("|")] == [
        "2024-05-01",
        "3",
        estimate(negatives.metrics.accuracy),
        "-",  # precision
        "-",  # recall
        "-",  # F1
        estimate(negatives.metrics.baseline_accuracy),
    ]
    for name in ("Precision", "Recall", "F1 score", "Matthews correlation"):
        assert f"| {name} | - | - | - |" in text
    drift = next(line for line in text.splitlines() if line.startswith("| 2024-05-02 00:00:00"))
    assert [cell.strip() for cell in drift.strip("|").split("|")][3:6] == [
        "-",  # no accuracy in an hour without outcomes
        "0",
        estimate(empty.accuracy_after),
    ]
    coverage = next(line for line in text.splitlines() if line.startswith("| 0 | 0 | 0 | 0 |"))
    assert coverage.endswith("| - |")


def test_json_is_the_document_as_read() -> None:
    answer = json.loads(to_json(report()))
    assert answer == msgspec.to_builtins(report())
    assert (
        answer["summary"]["metrics"]["accuracy"]["value"] == report().summary.metrics.accuracy.value
    )
    assert msgspec.json.decode(to_json(report()), type=Report) == report()


# Escaping


def test_html_escapes_every_text() -> None:
    html = page.render(report(config={"host": HOSTILE}))
    assert "<script" not in html
    assert html.count("&lt;script&gt;") == 2  # the setting and the detector
    assert "&amp; |" in html


def test_markdown_escapes_table_cells() -> None:
    text = markdown.render(report(config={"host": HOSTILE}))
    line = next(line for line in text.splitlines() if line.startswith("| host "))
    assert line == r'| host | \<script\>alert("x")\</script\> & \| \_\* |'
    assert re.split(r"(?<!\\)\|", line)[1:-1] == [" host ", line[8:-1]]


def test_the_page_fetches_nothing_and_runs_nothing() -> None:
    html = page.render(report())
    for needle in ("<script", "<link", "<img", "<iframe", " src=", " href=", "url(", "@import"):
        assert needle not in html.lower()
    assert html.startswith("<!DOCTYPE html>")


# Charts


def test_every_chart_is_well_formed_svg() -> None:
    charts = svgs(page.render(report()))
    assert [chart.tag for chart in charts] == ["svg", "svg"]
    for chart in charts:
        assert chart.get("viewBox") == "0 0 760 260"
        assert chart.find("title") is not None


def test_the_accuracy_chart_draws_each_day_its_band_and_the_drifts() -> None:
    chart = ET.fromstring(
        accuracy_chart(DAYS, MAY_1, MAY_1 + 5 * DAY_STEP, DAY_STEP, [event(MAY_1 + DAY_STEP)])
    )
    assert len(chart.findall("circle")) == 3
    assert len(chart.findall("polygon")) == 1  # the two consecutive days; the third is alone
    assert len(chart.findall("line[@class='interval']")) == 1
    drift = chart.findall("line[@class='drift']")
    assert len(drift) == 1
    assert float(drift[0].get("x1", "")) == pytest.approx(48 + 672 / 5)
    titles = [t.text or "" for t in chart.iter("title")]
    assert any(estimate(DAYS[0].metrics.accuracy) in t for t in titles)


def test_the_accuracy_band_holds_the_interval() -> None:
    chart = ET.fromstring(accuracy_chart(DAYS[:2], MAY_1, MAY_1 + 2 * DAY_STEP, DAY_STEP))
    band = chart.find("polygon")
    assert band is not None
    ys = [float(pair.split(",")[1]) for pair in band.get("points", "").split()]
    height = 260 - 16 - 40
    top = [220 - p.metrics.accuracy.high * height for p in DAYS[:2] if p.metrics.accuracy.high]
    bottom = [220 - p.metrics.accuracy.low * height for p in DAYS[:2] if p.metrics.accuracy.low]
    assert ys == pytest.approx([*top, *reversed(bottom)], abs=0.01)


def test_the_volume_chart_stacks_each_cell() -> None:
    chart = ET.fromstring(volume_chart(DAYS, MAY_1, MAY_1 + 5 * DAY_STEP, DAY_STEP))
    bars = [r for r in chart.findall("rect") if r.find("title") is not None]
    assert len(bars) == 4 + 4 + 2  # cells with a count only
    tallest = sum(float(r.get("height", "")) for r in bars[:4])
    assert tallest == pytest.approx(260 - 16 - 40, abs=0.05)  # the busiest day fills the plot


def test_a_period_without_feedback_has_no_chart() -> None:
    empty = report(days=[], events=[])
    html = page.render(empty)
    assert svgs(html) == []
    assert "No drift found in the period." in html
    assert "No drift found in the period." in markdown.render(empty)


def test_a_period_without_feedback_says_so_under_each_heading() -> None:
    """No heading and sentence with nothing under them: the per-day section says there is
    nothing, the per-day matrices are left out, and the detectors say they have not started."""
    empty = msgspec.structs.replace(report(days=[], events=[]), drift=Drift([], [], complete=True))
    text = markdown.render(empty)
    assert "## Per day\n\nNo labelled outcomes in the period.\n\n## Drift events" in text
    assert "Confusion matrices" not in text
    assert "## Drift detectors\n\nNone yet: the detectors start with" in text
    html = page.render(empty)
    assert '<section id="day-confusion">' not in html
    assert "<p>No labelled outcomes in the period.</p>\n</section>" in html


def test_the_bar_of_a_part_day_stays_within_the_plot() -> None:
    """A period that ends at noon has half of its last day: half as wide a bar, not one that
    overruns the plot's right edge."""
    days = [point(MAY_1 + n * DAY_STEP, (1, 1, 1, 1)) for n in range(3)]
    chart = ET.fromstring(volume_chart(days, MAY_1, MAY_1 + 2.5 * DAY_STEP, DAY_STEP))
    bars = [r for r in chart.findall("rect") if r.find("title") is not None]
    lefts = sorted({float(r.get("x", "")) for r in bars})
    widths = [float(r.get("width", "")) for r in bars[::4]]  # each day's first cell
    assert len(lefts) == 3
    assert min(lefts) >= 48
    assert all(float(r.get("x", "")) + float(r.get("width", "")) <= 760 - 40 for r in bars)
    assert widths[2] == pytest.approx(widths[0] / 2, abs=0.02)


@pytest.mark.parametrize("days", [1, 31, MAX_POINTS, MAX_POINTS + 1, 12_000, 7 * MAX_POINTS + 1])
def test_the_step_is_a_day_or_the_fewest_weeks_the_api_takes(days: int) -> None:
    """The oracle is the API's own check of a series' query, here over days from 1970 on,
    each step's edges some hours from midnight (the API rounds the period out)."""
    start = 0.3 * DAY_STEP
    end = start + days * DAY_STEP

    def takes(step: int) -> bool:
        params = {"start": str(start), "end": str(end), "step": str(step)}
        try:
            points_query("fraud", params, end, Retention())
        except BadParameter:
            return False
        return True

    chosen = steps.step(start, end)
    assert takes(chosen)
    if chosen != DAY_STEP:
        assert chosen % (7 * DAY_STEP) == 0
        assert not takes(chosen - 7 * DAY_STEP)
        assert not takes(DAY_STEP)


def test_a_period_longer_than_the_api_gives_days_is_reported_by_weeks() -> None:
    asked: list[str] = []
    served = answers([])

    def recording(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/series"):
            asked.append(request.url.params["step"])
        return served(request)

    start = MAY_1 - 12_000 * DAY_STEP  # 1991: more days than the API gives points
    with service(recording) as http:
        gathered = gather(http, "fraud", "v1", "prediction", start, MAY_1 + DAY_STEP)
    assert asked == ["604800"]
    assert gathered.step == 604800
    text = markdown.render(gathered)
    assert "## Per week\n\nEach step of 7 days from the period's start" in text
    assert "| From | n | Accuracy |" in text
    assert "## Confusion matrices per week" in text
    assert "Accuracy per week" in page.render(gathered)


def test_events_missing_beyond_the_limit_are_said_to_be() -> None:
    assert "older ones may be missing" in markdown.render(report(complete=False))
    assert "older ones may be missing" not in markdown.render(report())


# Dates and flags


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        ("2024-05-01", "2024-05-01", (MAY_1, MAY_1 + DAY_STEP)),
        ("2024-05-01T06:00:00Z", "2024-05-02T00:00:00+02:00", (MAY_1 + 21600, MAY_1 + 79200)),
        (None, "2024-05-31", (MAY_1 + DAY_STEP, MAY_1 + 31 * DAY_STEP)),
        ("2024-05-01t06:00:00z", "2024-05-02 00:00:00+02:00", (MAY_1 + 21600, MAY_1 + 79200)),
    ],
)
def test_a_period_from_dates(
    since: str | None, until: str | None, expected: tuple[float, float]
) -> None:
    assert period(since, until, now=0.0) == expected


def test_the_default_period_is_thirty_whole_days_to_now() -> None:
    now = MAY_1 + 31 * DAY_STEP + 3600
    assert period(None, None, now) == (MAY_1 + DAY_STEP, now)


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("2024-02-30", None, "--since: not a date: '2024-02-30'"),
        ("yesterday", None, "--since: not an RFC 3339 date or date-time: 'yesterday'"),
        (None, "2024-05-01T12:00:00", "--until: '2024-05-01T12:00:00' needs its time zone"),
        (
            "2024-05-02",
            "2024-05-01",  # its end is the next midnight: the period's start
            "the period is empty: it starts at 2024-05-02T00:00:00+00:00 (--since 2024-05-02)"
            " and ends at 2024-05-02T00:00:00+00:00 (--until 2024-05-01)",
        ),
        (None, "9999-12-31", "--until: '9999-12-31' ends past the year 9999"),
        ("1969-12-31", None, "--since: '1969-12-31' is before 1970-01-01"),
        ("1970-01-01T00:00:00+01:00", None, "--since: '1970-01-01T00:00:00+01:00' is before"),
    ],
)
def test_a_bad_period_is_one_clear_line(since: str | None, until: str | None, message: str) -> None:
    with pytest.raises(ReportError) as raised:
        period(since, until, now=MAY_1)
    assert raised.value.message.startswith(message)
    assert "\n" not in raised.value.message


@pytest.mark.parametrize(
    ("url", "token", "named"),
    [
        ("http://[::1", None, "--url"),
        ("http://127.0.0.1:9", "t\u00f8ken", "FEEDBACK_MONITOR_TOKEN"),
    ],
)
def test_a_url_or_token_that_cannot_be_used_is_one_clear_line(
    url: str, token: str | None, named: str
) -> None:
    with pytest.raises(ReportError) as raised:
        client(url, token)
    assert raised.value.message.startswith(f"{named}: ")
    assert "\n" not in raised.value.message


def test_a_date_time_is_taken_as_given() -> None:
    assert moment("--since", "2024-05-01T00:00:00.5+00:00") == MAY_1 + 0.5


@pytest.mark.parametrize(
    ("out", "chosen", "expected"),
    [
        ("r.html", None, "html"),
        ("R.MD", None, "md"),
        ("r.json", None, "json"),
        ("r.txt", "md", "md"),
        ("-", None, "html"),
    ],
)
def test_the_format_follows_the_extension(out: str, chosen: str | None, expected: str) -> None:
    assert output_format(Path(out), chosen) == expected
    assert expected in FORMATS


def test_an_unknown_extension_needs_a_format() -> None:
    with pytest.raises(ReportError, match="give --format"):
        output_format(Path("report.txt"), None)


def test_a_file_that_cannot_be_written_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ReportError) as raised:
        write(tmp_path / "missing" / "report.html", "<p>")
    assert raised.value.message.startswith(f"cannot write {tmp_path}/missing/report.html: ")


def test_the_client_sends_the_token_when_there_is_one() -> None:
    with client("http://service:5000/", "read-token") as http, client("http://s") as anonymous:
        assert str(http.base_url) == "http://service:5000"
        assert http.headers["Authorization"] == "Bearer read-token"
        assert "Authorization" not in anonymous.headers


# The API's answers


def service(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(base_url="http://service", transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            404,
            {"error": "Unknown model or version"},
            "unknown model or version at http://service: 'fraud' version 'v1'",
        ),
        (
            401,
            {"error": "Missing token"},
            "the service refused to read /api/v1/models/fraud/"
            "metrics (401): set FEEDBACK_MONITOR_TOKEN",
        ),
        (
            400,
            {"error": "Invalid query parameter 'time'"},
            "the service refused a flag: Invalid query parameter 'time'",
        ),
        (200, {"model": "fraud"}, "unexpected answer from /api/v1/models/fraud/metrics"),
    ],
)
def test_an_error_answer_is_one_clear_line(status: int, body: object, message: str) -> None:
    with (
        service(lambda request: httpx.Response(status, json=body)) as http,
        pytest.raises(ReportError) as raised,
    ):
        gather(http, "fraud", "v1", "arrival", MAY_1, MAY_1 + DAY_STEP)
    assert raised.value.message.startswith(message)


def test_an_unreachable_service_is_one_clear_line() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused")

    with service(refuse) as http, pytest.raises(ReportError) as raised:
        Api(http).get("/api/v1/config", dict[str, Any])
    assert raised.value.message == "cannot reach the service at http://service: Connection refused"


def answers(events: list[DriftEventAnswer]) -> Callable[[httpx.Request], httpx.Response]:
    """A service of one series, ``fraud`` ``v1``, whose period is ``DAYS``."""
    whole = report()
    state = SeriesState(Counts(*_cells(DAYS[0])))
    summary: ModelSummary = model_summary(("fraud", "v1"), state)
    other = model_summary(("fraud", "v2"), SeriesState(Counts()))
    bodies = {
        "/api/v1/models/fraud/metrics": whole.summary,
        "/api/v1/models/fraud/series": SeriesAnswer(
            "fraud", "v1", "prediction", MAY_1, MAY_1 + 5 * DAY_STEP, DAY_STEP, DAYS
        ),
        "/api/v1/models/fraud/drift": DriftAnswer("fraud", "v1", whole.drift.detectors, events),
        "/api/v1/models": Models([other, summary]),
        "/api/v1/config": {"host": "127.0.0.1"},
    }
    return lambda request: httpx.Response(200, content=encode(bodies[request.url.path]))


def test_gather_keeps_the_answers_and_the_drifts_of_the_period() -> None:
    inside = [event(MAY_1 + 2 * DAY_STEP), event(MAY_1)]
    events = [event(MAY_1 + 9 * DAY_STEP), *inside, event(MAY_1 - 1)]
    with service(answers(events)) as http:
        gathered = gather(http, "fraud", "v1", "prediction", MAY_1, MAY_1 + 5 * DAY_STEP)
    assert gathered.summary == report().summary
    assert gathered.days == DAYS
    assert gathered.drift.events == inside
    assert gathered.drift.complete
    assert gathered.predictions == PredictionStats(0, 0, 0, 0, 0.0)
    assert gathered.config == {"host": "127.0.0.1"}
    assert gathered.service == "http://service"


@pytest.mark.parametrize(("oldest", "complete"), [(MAY_1 + 1, False), (MAY_1 - 1, True)])
def test_gather_knows_when_older_events_may_be_missing(oldest: float, complete: bool) -> None:
    events = [event(MAY_1 + 2 * DAY_STEP)] * (EVENT_LIMIT - 1) + [event(oldest)]
    with service(answers(events)) as http:
        gathered = gather(http, "fraud", "v1", "prediction", MAY_1, MAY_1 + 5 * DAY_STEP)
    assert gathered.drift.complete is complete


@pytest.mark.parametrize(("header", "wait"), [("0", 1.0), ("3", 3.0), ("soon", 1.0), (None, 1.0)])
def test_a_busy_service_is_asked_again_after_a_second_at_least(
    header: str | None, wait: float
) -> None:
    headers = {} if header is None else {"retry-after": header}
    assert _retry_after(httpx.Response(429, headers=headers)) == wait
    assert _retry_after(httpx.Response(200, headers=headers)) is None
