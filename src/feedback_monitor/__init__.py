"""Feedback Monitor: a deployed classifier's real performance, durable and Prometheus-native."""

from feedback_monitor.confusion import Counts
from feedback_monitor.records import Feedback, InvalidRecord, parse_feedback
from feedback_monitor.settings import Settings

__all__ = ["Counts", "Feedback", "InvalidRecord", "Settings", "__version__", "parse_feedback"]

__version__ = "0.1.0"
