"""Page-Hinkley over blocks of errors: detection, calibration, persistence and reset."""

from feedback_monitor.drift import PageHinkley
from tests.drift_streams import DetectorContract, alarms, stream


class TestPageHinkley(DetectorContract):
    make = PageHinkley
    bounds = ((0.8, 500), (0.7, 200))


def test_better_accuracy_is_no_drift() -> None:
    errors = stream([(0.8, 5_000), (0.99, 20_000)], seed=2)
    assert alarms(PageHinkley(), errors, 32) == []


def test_a_drift_starts_the_estimate_afresh() -> None:
    detector = PageHinkley()
    alarms(detector, stream([(0.9, 5_000), (0.5, 300)], seed=4), 1)
    assert 0 < detector.n < 300
