"""Score histograms and their metrics, with scikit-learn as the oracle."""

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray
from sklearn.calibration import calibration_curve
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from feedback_monitor.scores import ScoreHistogram

Scored = tuple[NDArray[np.int64], NDArray[np.float64]]  # (actual, score)


def random_scored(seed: int) -> Scored:
    """Scores whose class separation and share of exact 0.0 and 1.0 vary with the seed."""
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 600))
    actual = (rng.random(size) < rng.random()).astype(np.int64)
    separation = rng.uniform(0, 6)
    score = rng.beta(1 + separation * actual, 1 + separation * (1 - actual))
    extreme = rng.random(size) < rng.uniform(0, 0.05)  # where clipping matters for log loss
    score[extreme] = rng.integers(0, 2, int(extreme.sum()))
    return actual, score


def arrays(actual: list[int], score: list[float]) -> Scored:
    return np.array(actual, np.int64), np.array(score, np.float64)


EDGE_STREAMS = {
    "negatives only": arrays([0] * 5, [0.1, 0.0, 0.9, 1.0, 0.5]),
    "positives only": arrays([1] * 5, [0.1, 0.0, 0.9, 1.0, 0.5]),
    "single sure miss": arrays([1], [0.0]),
    "one score for all": arrays([0, 1, 1, 0, 1], [0.5] * 5),
    "perfect and sure": arrays([0, 0, 1, 1], [0.0, 0.0, 1.0, 1.0]),
}
STREAMS = {**EDGE_STREAMS, **{f"seed {seed}": random_scored(seed) for seed in range(40)}}
BOTH_CLASSES = {name: s for name, s in STREAMS.items() if 0 < s[0].sum() < len(s[0])}


def histogram(stream: Scored, bins: int = 100) -> ScoreHistogram:
    actual, score = stream
    return ScoreHistogram.of(zip(score.tolist(), actual.tolist(), strict=True), bins)


def bin_counts(score: NDArray[np.float64], bins: int) -> NDArray[np.int64]:
    """Counts per bin (a, b], 0.0 in the first: Prometheus' le buckets, sklearn's calibration."""
    index = np.searchsorted(np.arange(bins + 1) / bins, score, side="left") - 1
    return np.bincount(np.maximum(index, 0), minlength=bins)


def per_bin(stream: Scored, bins: int = 100) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Negatives and positives per bin, highest bin first."""
    actual, score = stream
    return bin_counts(score[actual == 0], bins)[::-1], bin_counts(score[actual == 1], bins)[::-1]


def auc_bound(stream: Scored) -> float:
    """The stated bound: pairs sharing a bin are the only ones whose order is lost."""
    negatives, positives = per_bin(stream)
    return float((positives * negatives).sum() / (2 * positives.sum() * negatives.sum()))


def ap_bound(stream: Scored) -> float:
    """The stated bound: the spread of precision over thresholds inside each positive's bin."""
    negatives, positives = per_bin(stream)
    tp, fp = np.cumsum(positives), np.cumsum(negatives)
    tp_above, fp_above = tp - positives, fp - negatives
    with np.errstate(invalid="ignore", divide="ignore"):  # bins without positives weigh nothing
        spread = tp / (tp + fp_above) - (tp_above + 1) / (tp_above + 1 + fp)
    return float(np.where(positives > 0, positives * spread, 0).sum() / positives.sum())


@pytest.mark.parametrize("stream", list(BOTH_CLASSES.values()), ids=list(BOTH_CLASSES))
def test_ranking_on_raw_scores_is_within_the_stated_bound(stream: Scored) -> None:
    actual, score = stream
    h = histogram(stream)
    auc, ap = h.roc_auc(), h.average_precision()
    assert auc is not None
    assert ap is not None
    assert abs(auc - roc_auc_score(actual, score)) <= auc_bound(stream) + 1e-12
    assert abs(ap - average_precision_score(actual, score)) <= ap_bound(stream) + 1e-12


@pytest.mark.parametrize("stream", list(STREAMS.values()), ids=list(STREAMS))
def test_the_bounds_given_are_the_stated_ones(stream: Scored) -> None:
    actual, _ = stream
    h = histogram(stream)
    if 0 < actual.sum() < len(actual):
        assert h.roc_auc_error() == pytest.approx(auc_bound(stream), rel=1e-12, abs=1e-15)
    else:
        assert h.roc_auc() is h.roc_auc_error() is None
    if actual.sum():
        assert h.average_precision_error() == pytest.approx(ap_bound(stream), rel=1e-12, abs=1e-15)
    else:
        assert h.average_precision() is h.average_precision_error() is None


def test_a_rare_event_models_ranking_error_is_large_and_bounded() -> None:
    """Most scores of a fraud model crowd into the lowest bin: the binned ROC AUC is far from
    the raw one (a review measured 0.871 against 0.930), and the bound given says so."""
    rng = np.random.default_rng(7)
    actual = (rng.random(50_000) < 0.01).astype(np.int64)
    score = 1 / (1 + np.exp(-rng.normal(-6 + 2.5 * actual, 1.2)))
    h = histogram((actual, score))
    auc, error = h.roc_auc(), h.roc_auc_error()
    assert auc is not None
    assert error is not None
    gap = abs(auc - roc_auc_score(actual, score))
    assert 0.02 < gap <= error + 1e-12


def test_the_bounds_are_tight_enough_to_mean_something() -> None:
    large = [s for s in BOTH_CLASSES.values() if len(s[0]) >= 300]
    assert len(large) >= 10
    assert max(auc_bound(s) for s in large) < 0.01
    assert np.median([ap_bound(s) for s in large]) < 0.05


both_classes = st.lists(st.tuples(st.integers(0, 99), st.integers(0, 1)), min_size=2).filter(
    lambda pairs: {actual for _, actual in pairs} == {0, 1}
)


@given(both_classes, st.sampled_from([0.5, 1.0]), st.sampled_from([1, 7, 100]))
def test_ranking_on_quantised_scores_equals_sklearn(
    pairs: list[tuple[int, int]], offset: float, bins: int
) -> None:
    """Scores at bin midpoints (offset 0.5) or upper edges (1.0): nothing is lost to binning."""
    index, actual = (np.array(column) for column in zip(*pairs, strict=True))
    score = (index % bins + offset) / bins
    h = ScoreHistogram.of(zip(score.tolist(), actual.tolist(), strict=True), bins)
    assert h.roc_auc() == pytest.approx(roc_auc_score(actual, score), rel=1e-12)
    assert h.average_precision() == pytest.approx(average_precision_score(actual, score), rel=1e-12)


@pytest.mark.parametrize("stream", list(STREAMS.values()), ids=list(STREAMS))
def test_log_loss_and_brier_match_sklearn(stream: Scored) -> None:
    actual, score = stream
    h = histogram(stream)
    assert h.log_loss() == pytest.approx(log_loss(actual, score, labels=[0, 1]), rel=1e-9)
    assert h.brier() == pytest.approx(brier_score_loss(actual, score, labels=[0, 1]), rel=1e-9)


@pytest.mark.parametrize("stream", list(STREAMS.values()), ids=list(STREAMS))
def test_reliability_matches_sklearn_calibration_curve(stream: Scored) -> None:
    actual, score = stream
    observed, mean_score = calibration_curve(actual, score, n_bins=10, pos_label=1)
    counts, edges = bin_counts(score, 10), np.arange(11) / 10
    rows = histogram(stream).reliability()
    assert [row.count for row in rows] == counts[counts > 0].tolist()
    assert [row.low for row in rows] == pytest.approx(edges[:-1][counts > 0].tolist())
    assert [row.high for row in rows] == pytest.approx(edges[1:][counts > 0].tolist())
    assert [row.observed_rate for row in rows] == pytest.approx(observed.tolist(), rel=1e-12)
    assert [row.mean_score for row in rows] == pytest.approx(mean_score.tolist(), rel=1e-12)
    expected_error = (counts[counts > 0] * abs(mean_score - observed)).sum() / len(actual)
    assert histogram(stream).expected_calibration_error() == pytest.approx(expected_error)


def test_undefined_metrics_are_none_where_sklearn_warns() -> None:
    empty = ScoreHistogram.of(())
    assert [empty.roc_auc(), empty.average_precision(), empty.log_loss(), empty.brier()] == [
        None
    ] * 4
    assert (empty.expected_calibration_error(), empty.reliability()) == (None, [])
    negatives_only = ScoreHistogram.of([(0.2, 0), (0.7, 0)])
    positives_only = ScoreHistogram.of([(0.2, 1), (0.7, 1)])
    with pytest.warns(UndefinedMetricWarning, match="Only one class"):
        roc_auc_score([1, 1], [0.2, 0.7])
    assert negatives_only.roc_auc() is None
    assert positives_only.roc_auc() is None
    with pytest.warns(UserWarning, match="No positive class"):
        average_precision_score([0, 0], [0.2, 0.7])
    assert negatives_only.average_precision() is None
    assert positives_only.average_precision() == average_precision_score([1, 1], [0.2, 0.7])


def test_a_score_goes_to_the_bin_its_edges_say() -> None:
    """Bin i ends at (i + 1)/100 inclusive; ceil(score * 100) would misplace 0.07 and 0.14."""
    bin_of = {i: ScoreHistogram.of([((i + 1) / 100, 1)]).counts[1].index(1) for i in range(100)}
    assert bin_of == {i: i for i in range(100)}
    assert ScoreHistogram.of([(0.0, 0)]).counts[0][0] == 1
    assert ScoreHistogram.of([(math.nextafter(0.29, 1), 0)]).counts[0][29] == 1


@pytest.mark.parametrize("score", [-0.01, 1.01, math.nan, math.inf])
def test_a_score_outside_the_unit_interval_is_refused(score: float) -> None:
    with pytest.raises(ValueError, match="not within"):
        ScoreHistogram.of([(score, 1)])


scored = st.lists(st.tuples(st.floats(0, 1), st.integers(0, 1)))


@given(scored, scored, scored)
def test_histograms_add_up_to_the_histogram_of_the_whole(
    a: list[tuple[float, int]], b: list[tuple[float, int]], c: list[tuple[float, int]]
) -> None:
    whole = ScoreHistogram.of(a + b + c)
    parts = [ScoreHistogram.of(part) for part in (a, b, c)]
    for merged in (parts[0] + parts[1] + parts[2], ScoreHistogram.combined(parts)):
        assert merged.counts == whole.counts
        assert merged.to_row() == pytest.approx(whole.to_row(), rel=1e-9, abs=1e-9)
    assert parts[0] + parts[1] == parts[1] + parts[0]
    assert parts[0].add(0.5, 1) == parts[0] + ScoreHistogram.of([(0.5, 1)])


@given(scored, st.sampled_from([1, 10, 100]))
def test_a_stored_row_is_plain_numbers_and_restores_the_histogram(
    pairs: list[tuple[float, int]], bins: int
) -> None:
    h = ScoreHistogram.of(pairs, bins)
    row = json.loads(json.dumps(h.to_row()))
    assert len(row) == 4 * bins + 2  # O(bins), whatever the number of samples
    assert ScoreHistogram.from_row(row) == h
    assert all(type(count) is int for count in row[: 2 * bins])


def test_histograms_of_other_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="different bins"):
        ScoreHistogram.of((), 10) + ScoreHistogram.of((), 100)
    with pytest.raises(ValueError, match="not a score histogram"):
        ScoreHistogram.from_row([0, 1, 2])
    with pytest.raises(ValueError, match="do not divide"):
        ScoreHistogram.of((), 100).reliability(calibration_bins=7)


def test_combining_nothing_gives_an_empty_histogram() -> None:
    assert ScoreHistogram.combined([], bins=10) == ScoreHistogram.of((), 10)
