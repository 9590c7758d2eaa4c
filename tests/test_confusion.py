"""Counts and its metrics, with scikit-learn as the oracle."""

import functools
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from feedback_monitor.confusion import Counts

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


def assert_matches_sklearn(counts: Counts, stream: Stream) -> None:
    actual, prediction = stream
    tn, fp, fn, tp = confusion_matrix(actual, prediction, labels=[0, 1]).ravel().tolist()
    assert counts == Counts(tp=tp, tn=tn, fp=fp, fn=fn)
    assert counts.total == len(actual)
    expected = {
        "accuracy": accuracy_score(actual, prediction),
        "precision": precision_score(actual, prediction, zero_division=0),
        "recall": recall_score(actual, prediction, zero_division=0),
        "f1_score": f1_score(actual, prediction, zero_division=0),
    }
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


def test_no_outcome_gives_zero_not_nan() -> None:
    empty = Counts()
    assert empty.total == 0
    assert [empty.accuracy, empty.precision, empty.recall, empty.f1_score] == [0.0] * 4


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
