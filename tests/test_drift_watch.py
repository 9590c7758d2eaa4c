"""SeriesWatch: which detector sees which change, silence on stationary commits, and its state."""

import json
from typing import Any

import msgspec
import pytest

from feedback_monitor.confusion import Counts
from feedback_monitor.drift import Status
from feedback_monitor.drift.ddm import DDM
from feedback_monitor.drift.watch import DETECTORS, SeriesWatch
from tests.drift_blocks import (
    ERROR_DETECTORS,
    FAIR,
    FEWER_POSITIVES,
    OVER_PREDICTING,
    STEADY,
    WORSE,
    WORST,
    Mix,
    blocks,
    found,
)

SIZE = 50  # outcomes per commit
BEFORE = 6_000  # steady outcomes before a change
CHANGE = BEFORE // SIZE  # the index of the first commit after it
AFTER = 4_000


def drifts_after_a_change(
    to: Mix, seed: int, start: Mix = STEADY
) -> dict[str, list[tuple[int, float]]]:
    """Per detector, the (commit index, statistic) of each drift it found."""
    drifts: dict[str, list[tuple[int, float]]] = {}
    for index, detector, statistic in found(
        SeriesWatch(), blocks([(start, BEFORE), (to, AFTER)], SIZE, seed)
    ):
        drifts.setdefault(detector, []).append((index, statistic))
    return drifts


def assert_all_after_the_change(drifts: dict[str, list[tuple[int, float]]]) -> None:
    early = [(detector, i) for detector, found in drifts.items() for i, _ in found if i < CHANGE]
    assert early == [], f"false alarms before commit {CHANGE}"


@pytest.mark.parametrize("seed", range(5))
def test_an_accuracy_drop_is_found_by_the_error_detectors_alone(seed: int) -> None:
    """Accuracy 0.9 to 0.7 while prevalence and positive predictions stay at 0.5."""
    drifts = drifts_after_a_change(WORSE, seed)
    assert set(drifts) == ERROR_DETECTORS
    assert_all_after_the_change(drifts)
    for detector, ((first, statistic), *_) in drifts.items():
        assert first - CHANGE < 2_000 // SIZE, f"{detector} found the drop late"
        assert statistic > 0, detector  # more errors


@pytest.mark.parametrize("seed", range(5))
def test_more_positive_predictions_are_found_by_prediction_rate_alone(seed: int) -> None:
    """Positive predictions 0.5 to 0.7, accuracy 0.8 and prevalence 0.5 unchanged."""
    drifts = drifts_after_a_change(OVER_PREDICTING, seed, start=FAIR)
    assert set(drifts) == {"prediction_rate"}
    assert_all_after_the_change(drifts)
    (first, z), *_ = drifts["prediction_rate"]
    assert first - CHANGE < 2_000 // SIZE
    assert z >= 4.5  # above the reference


@pytest.mark.parametrize("seed", range(3))
def test_fewer_positive_labels_are_found_by_prevalence_and_prediction_rate(seed: int) -> None:
    """Prevalence 0.5 to 0.3 at the same accuracy: the labels moved, and the predictions too."""
    drifts = drifts_after_a_change(FEWER_POSITIVES, seed)
    assert set(drifts) == {"prevalence", "prediction_rate"}
    assert_all_after_the_change(drifts)
    assert all(z <= -4.5 for found in drifts.values() for _, z in found[:1])  # below it


@pytest.mark.parametrize(
    ("mix", "size"),
    [(STEADY, 10), (STEADY, 100), ((0.08, 0.82, 0.06, 0.04), 50), ((0.6, 0.35, 0.03, 0.02), 1)],
)
def test_stationary_commits_find_nothing_in_100_000_outcomes(mix: Mix, size: int) -> None:
    watch = SeriesWatch()
    for counts in blocks([(mix, 100_000)], size, seed=17):
        assert watch.observe(counts) == []
        assert Status.DRIFT not in watch.statuses().values()


def through_json(state: dict[str, Any]) -> Any:
    """A state as the store keeps it: msgspec's JSON, which has no infinity (it writes null)."""
    return msgspec.json.decode(msgspec.json.encode(state))


def json_copy(watch: SeriesWatch) -> SeriesWatch:
    """The watch as the store restores it."""
    return SeriesWatch.from_state(through_json(watch.state()))


@pytest.mark.parametrize("split", [20, CHANGE + 5, CHANGE + 40])
def test_a_watch_restored_from_json_continues_identically(split: int) -> None:
    """At 1,000 outcomes DDM has not warmed up (its minimum is still infinite); just after the
    drop the detectors are mid-way; later they have reset and relearnt."""
    commits = blocks([(STEADY, BEFORE), (WORSE, AFTER), (WORST, AFTER)], SIZE, seed=3)
    original = SeriesWatch()
    found(original, commits[:split])
    restored = json_copy(original)
    assert restored.state() == original.state()
    assert restored.statuses() == original.statuses()
    rest = found(original, commits[split:], split)
    assert found(restored, commits[split:], split) == rest
    assert len({drift.detector for drift in rest}) >= 2  # the continuation means something
    assert restored.state() == original.state()


def test_a_state_without_a_detector_restores_the_others_and_starts_it_afresh() -> None:
    """A detector added since the state was saved starts afresh; one removed is dropped."""
    commits = blocks([(STEADY, BEFORE), (WORSE, AFTER)], SIZE, seed=8)
    original = SeriesWatch()
    found(original, commits[: CHANGE - 20])
    state = {name: value for name, value in original.state().items() if name != "ddm"}
    restored = SeriesWatch.from_state(through_json({**state, "retired": {"x": 1}}))
    assert set(restored.detectors) == set(DETECTORS)
    assert restored.detectors["ddm"].state() == DDM().state()
    assert restored.statuses()["ddm"] == Status.STABLE
    others = {name: value for name, value in restored.state().items() if name != "ddm"}
    assert others == state

    fresh_ddm = SeriesWatch({"ddm": DDM()})
    rest = commits[CHANGE - 20 :]
    expected = [d for d in found(original, rest) if d.detector != "ddm"]
    expected += found(fresh_ddm, rest)
    assert sorted(found(restored, rest)) == sorted(expected)
    assert any(drift.detector == "ddm" for drift in expected)


def test_an_empty_commit_changes_nothing() -> None:
    watch = SeriesWatch()
    found(watch, blocks([(STEADY, 1_000)], SIZE, seed=1))
    before = json.dumps(watch.state())
    assert watch.observe(Counts()) == []
    assert json.dumps(watch.state()) == before
