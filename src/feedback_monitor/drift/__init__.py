"""Drift detectors over a series' stream of errors: pure objects fed per commit in blocks.

Each has ``update(error)``, ``update_many(n, errors)``, ``status``, ``drift_detected``,
``statistic``, ``state()`` and ``from_state(state)``; defaults hold false alarms to at most one
per 100,000 stationary samples at accuracies from 0.6 to 0.99 (see each module and
``bench/drift_eval.py``); above that, DDM's start-up raises a little more (``ddm.py``).
"""

from feedback_monitor.drift.adwin import ADWIN
from feedback_monitor.drift.base import Detector, Status
from feedback_monitor.drift.ddm import DDM
from feedback_monitor.drift.page_hinkley import PageHinkley
from feedback_monitor.drift.proportions import ProportionTest, two_proportion_z

__all__ = [
    "ADWIN",
    "DDM",
    "Detector",
    "PageHinkley",
    "ProportionTest",
    "Status",
    "two_proportion_z",
]
