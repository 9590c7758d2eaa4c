"""The report's sections as plain-text tables, which the HTML and Markdown formats lay out."""

import json
from collections.abc import Sequence
from dataclasses import dataclass

from feedback_monitor.confusion import Counts
from feedback_monitor.report import steps
from feedback_monitor.report.document import DAY_STEP, Report
from feedback_monitor.report.numbers import (
    NONE,
    amount,
    binned,
    count,
    day,
    estimate,
    moment,
    ratio,
)
from feedback_monitor.schemas import CountsBody, Estimate, PointAnswer, ScoreMetrics

STATUS = {0: "stable", 1: "warning", 2: "drift"}
VIEWS = {"arrival": "by label arrival", "prediction": "by prediction time"}
NAMES = {
    "accuracy": "Accuracy",
    "precision": "Precision",
    "recall": "Recall",
    "f1_score": "F1 score",
    "specificity": "Specificity",
    "balanced_accuracy": "Balanced accuracy",
    "matthews": "Matthews correlation",
    "prevalence": "Prevalence",
    "positive_rate": "Positive rate",
    "baseline_accuracy": "Baseline accuracy",
}
DAILY = ("accuracy", "precision", "recall", "f1_score", "baseline_accuracy")
NO_OUTCOMES = "No labelled outcomes in the period."

Row = tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: Row
    rows: Sequence[Row]


@dataclass(frozen=True)
class Section:
    """A titled part of the report: a sentence, then a table (none when it has no rows)."""

    key: str
    title: str
    text: str
    table: Table | None


def sections(report: Report) -> list[Section]:
    return [
        overview(report),
        summary(report),
        confusion(report),
        *scores(report.summary.scores),
        days(report),
        *day_confusions(report),
        drift_events(report),
        detectors(report),
        coverage(report),
        configuration(report),
    ]


def title(report: Report) -> str:
    return f"Audit report: {report.model} {version(report.version)}"


def version(text: str) -> str:
    return f"version {text}" if text else "(no version)"


def overview(report: Report) -> Section:
    s = report.summary
    rows = [
        ("Model", report.model),
        ("Version", report.version or "(none)"),
        ("Time", f"{report.time} ({VIEWS.get(report.time, report.time)})"),
        ("Period start", moment(s.start)),
        ("Period end", moment(s.end)),
        ("Resolution", f"{s.resolution} s"),
        ("Generated", moment(report.generated)),
        ("Service", report.service),
    ]
    return Section(
        "overview",
        "Report",
        "The series, the period and where the numbers come from.",
        Table(("Field", "Value"), rows),
    )


def summary(report: Report) -> Section:
    s = report.summary
    undefined = _undefined(s.counts)
    rows = [
        _metric_row(NAMES[name], None if name in undefined else getattr(s.metrics, name))
        for name in NAMES
    ]
    rows.append(("Value (cost matrix)", amount(s.value), NONE, NONE))
    text = f"{count(s.n)} labelled outcomes in the period; Wilson 95% intervals."
    return Section("summary", "Whole period", text, Table(("Metric", "Value", "Low", "High"), rows))


def _metric_row(name: str, value: Estimate | None) -> Row:
    if value is None:
        return (name, NONE, NONE, NONE)
    return (name, ratio(value.value), ratio(value.low), ratio(value.high))


def _undefined(counts: CountsBody) -> frozenset[str]:
    """The metrics the API gives as 0.0 for a zero denominator, which the report leaves out."""
    return Counts(counts.tp, counts.tn, counts.fp, counts.fn).undefined()


def _estimate(value: Estimate, n: int) -> str:
    """An accuracy of ``n`` outcomes with its interval; a dash for none."""
    return estimate(value) if n else NONE


def confusion(report: Report) -> Section:
    c = report.summary.counts
    rows = [
        ("Actual 1", count(c.tp), count(c.fn), count(c.tp + c.fn)),
        ("Actual 0", count(c.fp), count(c.tn), count(c.fp + c.tn)),
        ("Total", count(c.tp + c.fp), count(c.fn + c.tn), count(report.summary.n)),
    ]
    header = ("", "Predicted 1", "Predicted 0", "Total")
    return Section("confusion", "Confusion matrix", "The whole period.", Table(header, rows))


def scores(metrics: ScoreMetrics | None) -> list[Section]:
    """The score metrics, when feedback in the period carried scores."""
    if metrics is None:
        return []
    rows = [
        ("Scored outcomes", count(metrics.n)),
        ("ROC AUC", binned(metrics.roc_auc, metrics.roc_auc_error)),
        ("Average precision", binned(metrics.average_precision, metrics.average_precision_error)),
        ("Log loss", ratio(metrics.log_loss)),
        ("Brier score", ratio(metrics.brier)),
        ("Expected calibration error", ratio(metrics.expected_calibration_error)),
    ]
    text = (
        "Of the scores (probability of class 1) of the period's scored feedback. The service keeps"
        " scores in bins of 0.01: ROC AUC and average precision are within the ± shown of their"
        " value on the raw scores."
    )
    return [Section("scores", "Score metrics", text, Table(("Metric", "Value"), rows))]


def days(report: Report) -> Section:
    header = (_start(report.step), "n", *(NAMES[name] for name in DAILY))
    rows = [(day(p.start), count(p.n), *_daily(p)) for p in report.days]
    text = (
        f"Each step of {steps.span(report.step)} from the period's start (steps without "
        "feedback are absent); each metric with its Wilson 95% interval (low, high) where it "
        "has one."
    )
    if not rows:
        text = NO_OUTCOMES
    title = f"Per {steps.name(report.step)}"
    return Section("days", title, text, Table(header, rows) if rows else None)


def _start(step: int) -> str:
    """The heading of the column of the steps' starts."""
    return "Day" if step == DAY_STEP else "From"


def _daily(point: PointAnswer) -> Row:
    undefined = _undefined(point.counts)
    return tuple(
        NONE if name in undefined else estimate(getattr(point.metrics, name)) for name in DAILY
    )


def day_confusions(report: Report) -> list[Section]:
    """The confusion matrix of each step, when there are steps with feedback (the section
    before says when there are none)."""
    if not report.days:
        return []
    header = (_start(report.step), "TP", "FP", "FN", "TN", "n")
    rows = [(day(p.start), *_cells(p)) for p in report.days]
    step = steps.name(report.step)
    text = f"True and false positives and negatives per {step}."
    return [Section("day-confusion", f"Confusion matrices per {step}", text, Table(header, rows))]


def _cells(point: PointAnswer) -> Row:
    c = point.counts
    return (count(c.tp), count(c.fp), count(c.fn), count(c.tn), count(point.n))


def drift_events(report: Report) -> Section:
    header = (
        "Time",
        "Detector",
        "Statistic",
        "Accuracy before (95%)",
        "n before",
        "Accuracy after (95%)",
        "n after",
    )
    rows = [
        (
            moment(e.time),
            e.detector,
            ratio(e.statistic),
            _estimate(e.accuracy_before, e.n_before),
            count(e.n_before),
            _estimate(e.accuracy_after, e.n_after),
            count(e.n_after),
        )
        for e in report.drift.events
    ]
    text = (
        "Drifts found in the period (by label arrival), newest first, with the accuracy "
        "of the hour before and after."
    )
    if not rows:
        text = "No drift found in the period."
    if not report.drift.complete:
        text += " The service keeps only its latest events: older ones may be missing."
    return Section("drift", "Drift events", text, Table(header, rows) if rows else None)


def detectors(report: Report) -> Section:
    rows = [
        (d.detector, STATUS.get(d.status, str(d.status)), count(d.detections))
        for d in report.drift.detectors
    ]
    text = "Their status when the report was made."
    if not rows:
        text = "None yet: the detectors start with the series' first labelled outcome."
    return Section(
        "detectors",
        "Drift detectors",
        text,
        Table(("Detector", "Status", "Detections"), rows) if rows else None,
    )


def coverage(report: Report) -> Section:
    p = report.predictions
    rows = [
        (
            count(p.stored),
            count(p.labelled),
            count(p.pending),
            count(p.expired),
            ratio(p.label_coverage if p.stored else None),
        )
    ]
    text = "Predictions stored through /predictions since the series began, and their labels."
    header = ("Stored", "Labelled", "Pending", "Expired", "Label coverage")
    return Section("coverage", "Label coverage", text, Table(header, rows))


def configuration(report: Report) -> Section:
    rows = [(name, _setting(value)) for name, value in sorted(report.config.items())]
    text = "The settings in force in the service when the report was made."
    return Section("config", "Configuration", text, Table(("Setting", "Value"), rows))


def _setting(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
