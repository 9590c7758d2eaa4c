"""What scikit-learn and statsmodels say a window of outcomes should show, field by field.

Shared by the store's tests and the API's: an answer (as plain JSON data) is compared with
metrics computed here from the outcomes themselves, never with our own formulas.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    roc_auc_score,
)
from statsmodels.stats.proportion import proportion_confint  # type: ignore[import-untyped]

from tests.test_confusion import Stream, expected_metrics, successes_and_trials
from tests.test_scores import ap_bound, auc_bound, bin_counts

Pair = tuple[int, int]
"""An outcome's (prediction, actual)."""
Scored = tuple[float, int]
"""A scored outcome's (score, actual)."""


def confusion(pairs: Sequence[Pair]) -> dict[str, int]:
    """The four cells, by scikit-learn's confusion_matrix."""
    if not pairs:  # scikit-learn wants one sample at least
        return dict.fromkeys(("tp", "tn", "fp", "fn"), 0)
    predicted, actual = _columns(pairs)
    tn, fp, fn, tp = confusion_matrix(actual, predicted, labels=[0, 1]).ravel().tolist()
    return {"tp": tp, "tn": tn, "fp": fp, "fn": fn}


def _columns(pairs: Sequence[Pair]) -> tuple[list[int], list[int]]:
    return [p for p, _ in pairs], [a for _, a in pairs]


def _stream(pairs: Sequence[Pair]) -> Stream:
    predicted, actual = _columns(pairs)
    return np.array(actual, np.int64), np.array(predicted, np.int64)


def metrics(pairs: Sequence[Pair]) -> dict[str, float]:
    """Every window metric by scikit-learn; 0.0 for all of them on no outcomes."""
    if not pairs:
        return dict.fromkeys((*INTERVALS, "f1_score", "balanced_accuracy", "matthews"), 0.0)
    return expected_metrics(_stream(pairs))


INTERVALS = (
    "accuracy",
    "precision",
    "recall",
    "specificity",
    "prevalence",
    "positive_rate",
    "baseline_accuracy",
)
"""The metrics that are proportions of counts, with a Wilson interval."""


def intervals(pairs: Sequence[Pair]) -> dict[str, tuple[float, float]]:
    """statsmodels' Wilson 95% interval of each proportion; (0, 1) for no trial."""
    if not pairs:
        return dict.fromkeys(INTERVALS, (0.0, 1.0))
    return {
        name: (0.0, 1.0) if not n else proportion_confint(k, n, 0.05, method="wilson")
        for name, (k, n) in successes_and_trials(_stream(pairs)).items()
    }


def assert_window_metrics(answer: Mapping[str, Any], pairs: Sequence[Pair]) -> None:
    """``answer`` (a WindowMetrics as JSON) against scikit-learn and statsmodels."""
    expected, bounds = metrics(pairs), intervals(pairs)
    assert set(answer) == set(expected)
    for name, value in expected.items():
        estimate = answer[name]
        assert estimate["value"] == pytest.approx(value, abs=1e-12), name
        if name in INTERVALS:
            low, high = bounds[name]
            assert estimate["low"] == pytest.approx(low, abs=1e-12), name
            assert estimate["high"] == pytest.approx(high, abs=1e-12), name
        else:  # F1, MCC and balanced accuracy combine proportions: no binomial interval
            assert set(estimate) == {"value"}, name


def assert_score_metrics(answer: Mapping[str, Any] | None, scored: Sequence[Scored]) -> None:
    """``answer`` (a ScoreMetrics as JSON) against scikit-learn, ranking within the stated bin
    tolerance (``scores.py``); no scored outcome, no answer."""
    if not scored:
        assert answer is None
        return
    assert answer is not None
    score, actual = np.array([s for s, _ in scored]), np.array([a for _, a in scored])
    assert answer["n"] == len(scored)
    assert answer["log_loss"] == pytest.approx(log_loss(actual, score, labels=[0, 1]), rel=1e-9)
    assert answer["brier"] == pytest.approx(brier_score_loss(actual, score, pos_label=1), rel=1e-9)
    stream = (actual, score)
    if 0 < actual.sum() < len(actual):
        exact = roc_auc_score(actual, score)
        assert answer["roc_auc_error"] == pytest.approx(auc_bound(stream), rel=1e-9, abs=1e-15)
        assert abs(answer["roc_auc"] - exact) <= answer["roc_auc_error"] + 1e-12
    else:
        assert answer["roc_auc"] is answer["roc_auc_error"] is None
    if actual.sum():
        exact = average_precision_score(actual, score)
        bound = ap_bound(stream)
        assert answer["average_precision_error"] == pytest.approx(bound, rel=1e-9, abs=1e-15)
        assert abs(answer["average_precision"] - exact) <= answer["average_precision_error"] + 1e-12
    else:
        assert answer["average_precision"] is answer["average_precision_error"] is None
    _assert_reliability(answer, actual, score)


def _assert_reliability(
    answer: Mapping[str, Any], actual: np.ndarray[Any, Any], score: np.ndarray[Any, Any]
) -> None:
    observed, mean_score = calibration_curve(actual, score, n_bins=10, pos_label=1)
    counts = bin_counts(score, 10)
    rows = answer["reliability"]
    assert [row["count"] for row in rows] == counts[counts > 0].tolist()
    assert [row["low"] for row in rows] == pytest.approx((np.flatnonzero(counts) / 10).tolist())
    assert [row["observed_rate"] for row in rows] == pytest.approx(observed.tolist(), rel=1e-9)
    assert [row["mean_score"] for row in rows] == pytest.approx(mean_score.tolist(), rel=1e-9)
    gap = (counts[counts > 0] * abs(mean_score - observed)).sum() / len(actual)
    assert answer["expected_calibration_error"] == pytest.approx(gap, rel=1e-9, abs=1e-12)
