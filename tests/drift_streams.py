"""Seeded Bernoulli error streams and the checks every drift detector's tests share."""

import json
import statistics
from collections.abc import Callable

import numpy as np
import pytest

from feedback_monitor.drift import Detector, Status

STABLE = 5_000  # samples at accuracy 0.9 before a drop


def stream(accuracies: list[tuple[float, int]], seed: int) -> list[int]:
    """Errors (1 = wrong) of ``(accuracy, samples)`` segments, one after the other."""
    rng = np.random.default_rng(seed)
    parts = [rng.random(n) >= accuracy for accuracy, n in accuracies]
    return [int(x) for x in np.concatenate(parts)]


def alarms(detector: Detector, errors: list[int], block: int) -> list[int]:
    """Sample counts at which ``detector`` reported a drift, fed ``block`` samples at a time."""
    found = []
    for start in range(0, len(errors) - block + 1, block):
        detector.update_many(block, sum(errors[start : start + block]))
        if detector.drift_detected:
            found.append(start + block)
    return found


def drop_delay(make: Callable[[], Detector], after: float, block: int, seed: int) -> int:
    """Samples from a drop 0.9 -> ``after`` to the first alarm; the first 5,000 must be quiet."""
    errors = stream([(0.9, STABLE), (after, 5_000)], seed)
    found = alarms(make(), errors, block)
    assert found, "no alarm after the drop"
    assert found[0] > STABLE, f"false alarm at {found[0]}"
    return found[0] - STABLE


def median_delay(make: Callable[[], Detector], after: float, block: int) -> float:
    return statistics.median(drop_delay(make, after, block, seed) for seed in range(7))


def assert_round_trip(make: Callable[[], Detector], errors: list[int]) -> None:
    """A detector restored from JSON half-way behaves exactly as the one that went on."""
    original = make()
    half = len(errors) // 2
    alarms(original, errors[:half], 1)
    restored = type(original).from_state(json.loads(json.dumps(original.state())))
    assert restored.state() == original.state()
    for error in errors[half:]:
        assert restored.update(error) == original.update(error)
        assert restored.statistic == original.statistic
    assert restored.state() == original.state()


def assert_reset_after_drift(make: Callable[[], Detector], block: int) -> None:
    """After a drop is found the new regime is learnt: it raises no second alarm.

    A reset detector starts afresh, start-up false alarms included (Page-Hinkley repeats on
    about one stream in thirty), so two repeats in twenty streams of 20,000 samples are allowed;
    a detector that failed to reset would repeat on most of them.
    """
    repeats = 0
    for seed in range(20):
        detector = make()
        found = alarms(detector, stream([(0.9, STABLE), (0.7, 20_000)], seed), block)
        assert found, f"seed {seed}: the drop went unseen"
        assert found[0] > STABLE, f"seed {seed}: false alarm at {found[0]}"
        repeats += len(found) - 1
        assert detector.status is not Status.DRIFT
    assert repeats <= 2, repeats


class DetectorContract:
    """What every detector's tests check; a ``TestX`` subclass names the detector and bounds."""

    make: Callable[[], Detector]
    bounds: tuple[tuple[float, int], ...]  # (accuracy after a drop from 0.9, most samples)
    quiet_at: tuple[float, ...] = (0.6, 0.99)  # accuracies of 200,000 alarm-free samples
    block_slack = 64  # samples by which blocks of 32 may delay detection
    young = 0  # samples after a reset within which a drop is learnt, not found (DDM's warm start)

    @pytest.mark.parametrize("block", [1, 32])
    @pytest.mark.parametrize("after", [0.8, 0.7])
    def test_detects_a_drop_within_a_bound(self, block: int, after: float) -> None:
        delays = [drop_delay(self.make, after, block, seed) for seed in range(5)]
        assert max(delays) <= dict(self.bounds)[after], delays

    @pytest.mark.parametrize("block", [1, 32])
    def test_no_alarm_on_a_stationary_stream(self, block: int) -> None:
        for accuracy in self.quiet_at:
            assert alarms(self.make(), stream([(accuracy, 200_000)], seed=11), block) == []

    def test_blocks_of_32_detect_about_as_soon_as_single_samples(self) -> None:
        single = median_delay(self.make, 0.7, 1)
        assert median_delay(self.make, 0.7, 32) == pytest.approx(single, abs=self.block_slack)

    @pytest.mark.parametrize(("history", "block"), [(5_000, 5_000), (1_000, 10_000)])
    def test_finds_a_drop_in_blocks_as_large_as_its_history(self, history: int, block: int) -> None:
        """A batch client's commits (a block per series) may be as large as all that came since
        the last reset, or larger: a drop 0.9 -> 0.8 is found in one of its first two blocks."""
        if history < self.young:
            pytest.skip(f"a drop in the first {self.young:,} samples after a reset is learnt")
        for seed in range(5):
            errors = stream([(0.9, history), (0.8, 2 * block)], seed)
            detector = self.make()
            detector.update_many(history, sum(errors[:history]))
            assert not detector.drift_detected
            found = alarms(detector, errors[history:], block)
            assert found, f"seed {seed}: the drop went unseen"

    @pytest.mark.parametrize("accuracy", [0.99, 0.9])
    def test_large_blocks_after_a_short_history_raise_no_false_drift(self, accuracy: float) -> None:
        """A young series (a new version, or one a drift has just reset) of 500 samples, then
        two of a batch client's commits of 10,000, as accurate as those before them: no drift,
        in 200 streams (tested whole against its 500, the first commit raised one in 12% of
        them at 0.99)."""
        rng = np.random.default_rng(3)
        for stream_number in range(200):
            detector = self.make()
            for _ in range(10):
                detector.update_many(50, int(rng.binomial(50, 1 - accuracy)))
            for _ in range(2):
                detector.update_many(10_000, int(rng.binomial(10_000, 1 - accuracy)))
                assert not detector.drift_detected, f"stream {stream_number}"

    def test_state_round_trip_behaves_identically(self) -> None:
        assert_round_trip(self.make, stream([(0.9, 4_000), (0.7, 4_000)], seed=5))

    @pytest.mark.parametrize("block", [1, 32])
    def test_resets_after_a_drift(self, block: int) -> None:
        assert_reset_after_drift(self.make, block)

    def test_an_impossible_block_is_refused(self) -> None:
        for n, errors in [(1, 2), (3, -1), (-1, 0)]:
            with pytest.raises(ValueError, match="errors <= n"):
                self.make().update_many(n, errors)
