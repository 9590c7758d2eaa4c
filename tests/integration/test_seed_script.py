"""The seed document's own test script, run against the started service, its cases asserted.

Copied from ``shared/seed/model-feedback-api.md`` ("Testing the Endpoint"): the same requests
with ``requests``, the URL pointed at the service, the prints turned into assertions.
"""

import pytest
import requests

from feedback_monitor.testing import ServiceProcess

pytestmark = pytest.mark.integration


def test_feedback(service: ServiceProcess) -> None:
    url = service.url + "/feedback"
    headers = {"Content-Type": "application/json"}

    # Test case 1: Successful feedback
    data = {"prediction": 1, "actual": 1}
    response = requests.post(url, headers=headers, json=data, timeout=10)
    assert response.status_code == 200
    assert response.json()["success"] is True
    assert response.json()["metrics"] == {
        "accuracy": 1.0,
        "precision": 1.0,
        "recall": 1.0,
        "f1_score": 1.0,
    }

    # Test case 2: Missing fields
    data = {"prediction": 1}
    response = requests.post(url, headers=headers, json=data, timeout=10)
    assert response.status_code == 400
    assert response.json() == {"error": "Missing required fields"}

    # Test case 3: Invalid values
    data = {"prediction": 2, "actual": 1}
    response = requests.post(url, headers=headers, json=data, timeout=10)
    assert response.status_code == 400
    assert response.json() == {"error": "Values must be 0 or 1"}
