"""The JSON shapes the API answers with; msgspec encodes them and derives their JSON Schema."""

import functools
from typing import Annotated, Literal

import msgspec

from feedback_monitor.confusion import Counts
from feedback_monitor.series import Series, SeriesState


class Metrics(msgspec.Struct):
    """The four metrics of one series (those of the original feedback API); 0.0 where a
    denominator is zero."""

    accuracy: float
    precision: float
    recall: float
    f1_score: float

    @classmethod
    def of(cls, counts: Counts) -> "Metrics":
        return cls(counts.accuracy, counts.precision, counts.recall, counts.f1_score)


class FeedbackAccepted(msgspec.Struct, omit_defaults=True):
    """An accepted feedback: metrics over all committed feedback, this one included.

    ``duplicate`` appears, true, when the id was already counted: nothing was counted again.
    """

    success: Literal[True]
    metrics: Metrics
    duplicate: bool = False


class PredictionAccepted(msgspec.Struct, omit_defaults=True):
    """A stored prediction; ``duplicate`` when this id was already stored the same (model,
    version, prediction, and score if the repeat gives one): nothing was stored again, the first
    score and timestamp stay."""

    success: Literal[True]
    duplicate: bool = False


class SeriesMetrics(msgspec.Struct):
    model: str
    version: str
    accuracy: float
    precision: float
    recall: float
    f1_score: float


class BatchAccepted(msgspec.Struct):
    """A committed batch: items counted, repeats of counted ids, every touched series' metrics."""

    success: Literal[True]
    accepted: int
    duplicates: int
    metrics: list[SeriesMetrics] = []


class PredictionBatchAccepted(msgspec.Struct):
    success: Literal[True]
    accepted: int
    duplicates: int


class CountsBody(msgspec.Struct):
    tp: int
    tn: int
    fp: int
    fn: int


class PredictionStats(msgspec.Struct):
    """Predictions stored through /predictions, and what became of them."""

    stored: int
    labelled: int
    pending: int
    expired: int
    label_coverage: float


class ModelSummary(msgspec.Struct):
    model: str
    version: str
    counts: CountsBody
    metrics: Metrics
    predictions: PredictionStats


class Models(msgspec.Struct):
    models: list[ModelSummary]


class Estimate(msgspec.Struct, omit_defaults=True):
    """A metric, with its Wilson 95% interval where it is a proportion of counts."""

    value: float
    low: float | None = None
    high: float | None = None


class WindowMetrics(msgspec.Struct):
    """Every metric of a window; 0.0 where a denominator is zero (the interval is then 0 to 1).

    ``baseline_accuracy`` is the accuracy of always predicting the majority actual class.
    """

    accuracy: Estimate
    precision: Estimate
    recall: Estimate
    f1_score: Estimate
    specificity: Estimate
    balanced_accuracy: Estimate
    matthews: Estimate
    prevalence: Estimate
    positive_rate: Estimate
    baseline_accuracy: Estimate

    @classmethod
    def of(cls, counts: Counts) -> "WindowMetrics":
        intervals = counts.intervals()
        return cls(**{
            name: Estimate(getattr(counts, name), *intervals.get(name, (None, None)))
            for name in cls.__struct_fields__
        })  # fmt: skip


class ReliabilityBin(msgspec.Struct):
    low: float
    high: float
    count: int
    mean_score: float
    observed_rate: float


_BINNED = (
    "The most the metric before it can be off its value on the raw scores: scores are kept in "
    "100 bins of width 0.01, and the order of a positive and a negative in one bin is lost."
)


class ScoreMetrics(msgspec.Struct):
    """Metrics of the scores (the probability of class 1) of a window's scored feedback; null
    where undefined (no samples, or one class only for ROC AUC)."""

    n: int
    roc_auc: float | None
    roc_auc_error: Annotated[float | None, msgspec.Meta(description=_BINNED)]
    average_precision: float | None
    average_precision_error: Annotated[float | None, msgspec.Meta(description=_BINNED)]
    log_loss: float | None
    brier: float | None
    expected_calibration_error: float | None
    reliability: list[ReliabilityBin]


class WindowAnswer(msgspec.Struct):
    """The metrics of one series over ``[start, end)`` (Unix seconds), read from its time
    buckets of ``resolution`` seconds and coarser. ``value`` is the configured cost matrix's
    total (null without one)."""

    model: str
    version: str
    time: str
    start: float
    end: float
    resolution: int
    n: int
    counts: CountsBody
    metrics: WindowMetrics
    value: float | None
    scores: ScoreMetrics | None


class PointAnswer(msgspec.Struct):
    start: float
    n: int
    counts: CountsBody
    metrics: WindowMetrics


class SeriesAnswer(msgspec.Struct):
    """The metrics of each ``step`` seconds from ``start``; steps without feedback are absent.
    The last step ends at ``end`` and may be shorter, where the range is no whole number of
    steps (``window=24h`` gives steps of 1,440 s over the 1,441 minutes its buckets cover)."""

    model: str
    version: str
    time: str
    start: float
    end: float
    step: int
    points: list[PointAnswer]


class DetectorStatus(msgspec.Struct):
    detector: str
    status: int  # 0 stable, 1 warning, 2 drift
    detections: int


class DriftEventAnswer(msgspec.Struct):
    """A drift found at ``time`` (Unix seconds, the commit that revealed it), with the series'
    accuracy in the hour before and in the hour after (so far), by label arrival, in whole
    buckets: the one that holds the drift counts after it (where only days are kept, before
    is the day before)."""

    time: float
    detector: str
    statistic: float
    accuracy_before: Estimate
    n_before: int
    accuracy_after: Estimate
    n_after: int


class DriftAnswer(msgspec.Struct):
    """The series' detectors as committed, and their latest drifts, newest first."""

    model: str
    version: str
    detectors: list[DetectorStatus]
    events: list[DriftEventAnswer]


class Error(msgspec.Struct, omit_defaults=True):
    """Every error answer; ``index`` names the batch item at fault."""

    error: str
    index: int | None = None


class Status(msgspec.Struct):
    """The answer of /health and /ready."""

    status: str


# The documented shapes of the request fields; the parser (records.py) enforces them. Patterns
# end in $ here: JSON Schema's regular expressions are ECMA-262's, which have no \Z.
_Binary = Annotated[
    Literal[0, 1],
    msgspec.Meta(description='Exactly the JSON integer 0 or 1: 1.0, true and "1" are refused.'),
]
# records.NAME_PATTERN and VERSION_PATTERN so spelled; the read API's parameters take them too.
JSON_NAME_PATTERN = "^(?!\\.\\.?$)[A-Za-z0-9_.:-]{1,64}$"
JSON_VERSION_PATTERN = "^[A-Za-z0-9_.:-]{0,64}$"
_Model = Annotated[str, msgspec.Meta(pattern=JSON_NAME_PATTERN)]
_Version = Annotated[str, msgspec.Meta(pattern=JSON_VERSION_PATTERN)]
_Id = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")
]
_Score = Annotated[float, msgspec.Meta(ge=0, le=1)]
_WHEN = "not before 1970, nor a day ahead of the server's clock (a time ahead counts at arrival)"
_Timestamp = (
    Annotated[
        str,
        msgspec.Meta(
            description="RFC 3339, with a time zone", extra_json_schema={"format": "date-time"}
        ),
    ]
    | Annotated[float, msgspec.Meta(ge=0, description=f"or Unix seconds; either way {_WHEN}")]
)


class FeedbackRequest(msgspec.Struct):
    """The body of POST /feedback; other fields are ignored (parsing is in records.py).

    Without ``prediction`` it must carry the ``id`` of a stored prediction, which it labels.
    An ``id`` already stored keeps the model and version it was stored under: a repeat naming
    another series answers with the stored series' metrics.
    """

    actual: _Binary
    prediction: _Binary | None = None
    model: _Model = "default"
    version: _Version = ""
    id: _Id | None = None
    score: _Score | None = None
    timestamp: _Timestamp | None = None


class PredictionRequest(msgspec.Struct):
    """The body of POST /predictions.

    A repeat of an id already stored must carry the same model, version and prediction, and
    the same score if it gives one, to be a ``duplicate``; another is 409. Its timestamp is not
    compared (a retry without one gets the server's clock): the first score and time stay.
    """

    id: _Id
    prediction: _Binary
    model: _Model = "default"
    version: _Version = ""
    score: _Score | None = None
    timestamp: _Timestamp | None = None


class FeedbackBatchRequest(msgspec.Struct):
    items: list[FeedbackRequest]


class PredictionBatchRequest(msgspec.Struct):
    items: list[PredictionRequest]


encode = msgspec.json.Encoder().encode


@functools.lru_cache(maxsize=4096)
def feedback_accepted(counts: Counts, duplicate: bool = False) -> bytes:
    """The encoded answer at these counts; every request of one commit and series shares it."""
    return encode(FeedbackAccepted(True, Metrics.of(counts), duplicate))


def series_metrics(series: Series, state: SeriesState) -> SeriesMetrics:
    c = state.counts
    return SeriesMetrics(*series, c.accuracy, c.precision, c.recall, c.f1_score)


def model_summary(series: Series, state: SeriesState) -> ModelSummary:
    c, s = state.counts, state
    return ModelSummary(
        *series,
        CountsBody(*c.fields),
        Metrics.of(c),
        PredictionStats(s.predicted, s.labelled, s.pending, s.expired, s.label_coverage),
    )
