"""ADWIN over blocks of errors: detection, calibration, persistence and reset."""

from feedback_monitor.drift import ADWIN, Status
from tests.drift_streams import DetectorContract, median_delay


class TestADWIN(DetectorContract):
    make = ADWIN
    bounds = ((0.8, 800), (0.7, 300))


def test_a_stricter_delta_detects_later() -> None:
    assert median_delay(lambda: ADWIN(delta=1e-6), 0.8, 32) > median_delay(ADWIN, 0.8, 32)


def test_a_drift_shrinks_the_window_to_the_new_regime() -> None:
    detector = ADWIN()
    for _ in range(100):
        detector.update_many(100, 10)
    while detector.update_many(100, 50) is not Status.DRIFT:
        pass
    assert detector.width < 2_000
    assert detector.error_rate > 0.3


def test_the_window_keeps_logarithmically_many_buckets() -> None:
    detector = ADWIN()
    for _ in range(100_000):
        detector.update_many(1, 0)
    assert detector.width == 100_000
    assert sum(len(level) for level in detector.levels) <= 5 * 17
