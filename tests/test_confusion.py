"""Counts and its metrics, with scikit-learn as the oracle."""

import functools
import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray
from sklearn.dummy import DummyClassifier
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_score,
    recall_score,
)
from statsmodels.stats.proportion import proportion_confint  # type: ignore[import-untyped]

from feedback_monitor.confusion import Costs, Counts, wilson

Stream = tuple[NDArray[np.int64], NDArray[np.int64]]  # (actual, prediction)


def random_stream(seed: int) -> Stream:
    """A stream of random length whose positive and agreement rates vary with the seed."""
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 400))
    actual = (rng.random(size) < rng.random()).astype(np.int64)
    agree = rng.random(size) < rng.random()
    return actual, np.where(agree, actual, 1 - actual)


def constant(size: int, actual: int, prediction: int) -> Stream:
    return np.full(size, actual, np.int64), np.full(size, prediction, np.int64)


def arrays(actual: list[int], prediction: list[int]) -> Stream:
    return np.array(actual, np.int64), np.array(prediction, np.int64)


EDGE_STREAMS = {
    "all zero": constant(50, 0, 0),
    "all one": constant(50, 1, 1),
    "all false positive": constant(7, 0, 1),
    "all false negative": constant(7, 1, 0),
    "single tp": constant(1, 1, 1),
    "single tn": constant(1, 0, 0),
    "single fp": constant(1, 0, 1),
    "single fn": constant(1, 1, 0),
    "predicts only zero": arrays([0, 1, 1, 0, 1], [0] * 5),
    "predicts only one": arrays([0, 1, 1, 0, 1], [1] * 5),
    "no positives, some predicted": arrays([0] * 6, [0, 1, 0, 0, 1, 0]),
    "alternating": arrays([0, 1] * 20, [1, 0] * 20),
    "one of each": arrays([1, 0, 0, 1], [1, 0, 1, 0]),
}
STREAMS = {**EDGE_STREAMS, **{f"seed {seed}": random_stream(seed) for seed in range(40)}}


def one_at_a_time(stream: Stream) -> Counts:
    actual, prediction = stream
    counts = Counts()
    for a, p in zip(actual.tolist(), prediction.tolist(), strict=True):
        counts = counts.add(prediction=p, actual=a)
    return counts


def in_parts(stream: Stream, seed: int) -> Counts:
    """Counts of random slices of the stream (some empty), combined with ``+``."""
    actual, _ = stream
    rng = np.random.default_rng(seed)
    cuts = sorted(rng.integers(0, len(actual) + 1, size=int(rng.integers(0, 6))).tolist())
    bounds = [0, *cuts, len(actual)]
    parts = [
        one_at_a_time((stream[0][start:stop], stream[1][start:stop]))
        for start, stop in itertools.pairwise(bounds)
    ]
    return functools.reduce(Counts.__add__, parts, Counts())


def majority_baseline_accuracy(actual: NDArray[np.int64]) -> float:
    features = np.zeros((len(actual), 1))
    return float(
        DummyClassifier(strategy="most_frequent").fit(features, actual).score(features, actual)
    )


def expected_metrics(stream: Stream) -> dict[str, float]:
    """Every metric of the stream, by scikit-learn or straight from the arrays."""
    actual, prediction = stream
    with warnings.catch_warnings():
        # scikit-learn warns when a stream lacks a class; those streams are the edges under test,
        # and what it returns for them is the convention we match.
        warnings.filterwarnings(
            "ignore", "A single label was found|y_pred contains classes not in y_true", UserWarning
        )
        return {
            "accuracy": accuracy_score(actual, prediction),
            "precision": precision_score(actual, prediction, zero_division=0),
            "recall": recall_score(actual, prediction, zero_division=0),
            "f1_score": f1_score(actual, prediction, zero_division=0),
            "specificity": recall_score(actual, prediction, pos_label=0, zero_division=0),
            "balanced_accuracy": balanced_accuracy_score(actual, prediction),
            "matthews": matthews_corrcoef(actual, prediction),
            "prevalence": float(np.mean(actual)),
            "positive_rate": float(np.mean(prediction)),
            "baseline_accuracy": majority_baseline_accuracy(actual),
        }


def assert_matches_sklearn(counts: Counts, stream: Stream) -> None:
    actual, prediction = stream
    tn, fp, fn, tp = confusion_matrix(actual, prediction, labels=[0, 1]).ravel().tolist()
    assert counts == Counts(tp=tp, tn=tn, fp=fp, fn=fn)
    assert counts.total == len(actual)
    expected = expected_metrics(stream)
    got = {name: getattr(counts, name) for name in expected}
    assert got == pytest.approx(expected, rel=1e-12, abs=0)
    assert all(type(value) is float for value in got.values())


@pytest.mark.parametrize("stream", list(STREAMS.values()), ids=list(STREAMS))
def test_one_outcome_at_a_time_matches_sklearn(stream: Stream) -> None:
    assert_matches_sklearn(one_at_a_time(stream), stream)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("stream", list(STREAMS.values()), ids=list(STREAMS))
def test_sum_of_parts_matches_sklearn(stream: Stream, seed: int) -> None:
    assert_matches_sklearn(in_parts(stream, seed), stream)


@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1))
def test_generated_streams_match_sklearn(outcomes: list[tuple[int, int]]) -> None:
    actual, prediction = (np.array(column, np.int64) for column in zip(*outcomes, strict=True))
    assert_matches_sklearn(one_at_a_time((actual, prediction)), (actual, prediction))


def test_no_outcome_gives_zero_not_nan() -> None:
    empty = Counts()
    assert empty.total == 0
    metrics = [getattr(empty, name) for name in expected_metrics(constant(1, 0, 0))]
    assert metrics == [0.0] * 10
    assert set(empty.intervals().values()) == {(0.0, 1.0)}


counts = st.builds(Counts, *(st.integers(0, 10**6) for _ in range(4)))


@given(counts, counts, counts)
def test_addition_is_a_commutative_monoid(a: Counts, b: Counts, c: Counts) -> None:
    assert (a + b) + c == a + (b + c)
    assert a + b == b + a
    assert a + Counts() == a == Counts() + a
    assert (a + b).total == a.total + b.total


# The seed's definitions: which count one (prediction, actual) outcome increments.
CELL = {(1, 1): "tp", (0, 0): "tn", (1, 0): "fp", (0, 1): "fn"}


@given(counts, st.sampled_from(list(CELL)))
def test_add_increments_exactly_its_cell(before: Counts, outcome: tuple[int, int]) -> None:
    snapshot = Counts(before.tp, before.tn, before.fp, before.fn)
    after = before.add(prediction=outcome[0], actual=outcome[1])
    assert before == snapshot  # immutable: add() returns new counts
    for cell in CELL.values():
        grown = getattr(after, cell) - getattr(before, cell)
        assert grown == (1 if cell == CELL[outcome] else 0)


@given(st.integers(0, 10**7).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_matches_statsmodels(successes_of: tuple[int, int]) -> None:
    successes, n = successes_of
    low, high = wilson(successes, n)
    if n == 0:
        assert (low, high) == (0.0, 1.0)  # statsmodels gives NaN: no trial, no knowledge
        return
    expected = proportion_confint(successes, n, alpha=0.05, method="wilson")
    assert (low, high) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert (low == 0.0) == (successes == 0)  # exact at the ends, where statsmodels clips
    assert (high == 1.0) == (successes == n)


def successes_and_trials(stream: Stream) -> dict[str, tuple[int, int]]:
    """Each proportion counted from the arrays: (successes, trials)."""
    actual, prediction = (column.astype(bool) for column in stream)
    majority = int(np.bincount(actual, minlength=2).max())

    def share(hit: NDArray[np.bool_], among: NDArray[np.bool_]) -> tuple[int, int]:
        return int(hit[among].sum()), int(among.sum())

    everything = np.ones_like(actual)
    return {
        "accuracy": share(actual == prediction, everything),
        "precision": share(actual, prediction),
        "recall": share(prediction, actual),
        "specificity": share(~prediction, ~actual),
        "prevalence": share(actual, everything),
        "positive_rate": share(prediction, everything),
        "baseline_accuracy": (majority, len(actual)),
    }


@pytest.mark.parametrize("stream", list(STREAMS.values()), ids=list(STREAMS))
def test_intervals_match_statsmodels(stream: Stream) -> None:
    counts = one_at_a_time(stream)
    parts = successes_and_trials(stream)
    assert counts.proportions() == parts
    for name, (successes, trials) in parts.items():
        low, high = counts.intervals()[name]
        if trials:
            expected = proportion_confint(successes, trials, alpha=0.05, method="wilson")
            assert (low, high) == pytest.approx(expected, rel=1e-9, abs=1e-12), name
        else:
            assert (low, high) == (0.0, 1.0), name
        assert low <= getattr(counts, name) <= high, name


costs = st.builds(Costs, *(st.floats(-1e6, 1e6) for _ in range(4)))


@given(costs, st.integers(0, 10**4))
def test_cost_sums_the_value_of_each_outcome(values: Costs, seed: int) -> None:
    actual, prediction = random_stream(seed)
    value_of_outcome = {(1, 1): values.tp, (0, 0): values.tn, (1, 0): values.fp, (0, 1): values.fn}
    outcomes = zip(prediction.tolist(), actual.tolist(), strict=True)
    expected = sum(value_of_outcome[outcome] for outcome in outcomes)
    got = one_at_a_time((actual, prediction)).cost(values)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-6)


@pytest.mark.parametrize("stream", list(EDGE_STREAMS.values()), ids=list(EDGE_STREAMS))
def test_undefined_metrics_are_those_sklearn_cannot_divide(stream: Stream) -> None:
    """scikit-learn's ``zero_division=nan`` gives NaN exactly where a denominator is zero;
    Matthews correlation divides by the product of the matrix's row and column sums."""
    actual, prediction = stream
    nan = np.nan
    by_sklearn = {
        "precision": precision_score(actual, prediction, zero_division=nan),
        "recall": recall_score(actual, prediction, zero_division=nan),
        "f1_score": f1_score(actual, prediction, zero_division=nan),
        "specificity": recall_score(actual, prediction, pos_label=0, zero_division=nan),
    }
    matrix = confusion_matrix(actual, prediction, labels=[0, 1])
    empty_line = (matrix.sum(axis=0) == 0).any() or (matrix.sum(axis=1) == 0).any()
    undefined = one_at_a_time(stream).undefined()
    assert undefined - {"matthews"} == {n for n, v in by_sklearn.items() if np.isnan(v)}
    assert ("matthews" in undefined) == empty_line


def test_every_metric_is_undefined_without_outcomes() -> None:
    names = {*Counts().proportions(), "f1_score", "balanced_accuracy", "matthews"}
    assert Counts().undefined() == names


@pytest.mark.parametrize("scale", [1, 10**4, 97_949_941, 10**12])
def test_matthews_of_a_perfect_classifier_is_exactly_one_at_any_scale(scale: int) -> None:
    """scikit-learn's answer for a perfect (or perfectly wrong) classifier, which rounding
    passed by an ulp at about 10^8 outcomes."""
    for tp, tn in [(scale, scale), (scale, 95_311_175), (3, scale)]:
        assert Counts(tp=tp, tn=tn).matthews == 1.0
        assert Counts(fp=tp, fn=tn).matthews == -1.0
