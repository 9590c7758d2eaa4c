"""kill -9 under load, several times on one data dir: acknowledged <= stored <= attempted.

A 200 is sent only after its feedback is committed, so every acknowledged feedback survives a
crash; nothing that was never sent can appear. Checked per confusion cell, cumulatively.
"""

import collections
import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.integration.helpers import CELLS, Load, cell_counts, process_tree, scrape, serving

pytestmark = pytest.mark.integration

ROUNDS = 3
ACKS_PER_ROUND = 400


def stored(url: str) -> dict[str, int]:
    with httpx.Client(base_url=url, timeout=10.0) as client:
        return cell_counts(scrape(client))


def assert_bounded(
    counts: dict[str, int],
    acknowledged: collections.Counter[str],
    attempted: collections.Counter[str],
) -> None:
    for cell in CELLS:
        assert acknowledged[cell] <= counts[cell] <= attempted[cell], (cell, counts)


def test_kill_9_under_load_loses_no_acknowledged_feedback(data_dir: Path, log_path: Path) -> None:
    acknowledged: collections.Counter[str] = collections.Counter()
    attempted: collections.Counter[str] = collections.Counter()
    for round_ in range(ROUNDS):
        with serving(data_dir, log_path=log_path) as service:
            assert_bounded(stored(service.url), acknowledged, attempted)
            with Load(service.url, seed=round_) as load:
                load.wait_for_acks(ACKS_PER_ROUND)
                service.kill()  # SIGKILL while the clients keep sending
            assert load.errors, "the load ended before the kill"
            assert load.unexpected == []
            acknowledged += load.acknowledged
            attempted += load.attempted
    with serving(data_dir, log_path=log_path) as service:
        counts = stored(service.url)
    assert_bounded(counts, acknowledged, attempted)
    assert sum(counts.values()) >= ROUNDS * ACKS_PER_ROUND


def test_kill_9_of_the_store_process_under_load(data_dir: Path, log_path: Path) -> None:
    """The store's own process killed: what was acknowledged stays, and the service recovers."""
    with serving(data_dir, log_path=log_path) as service:
        with Load(service.url) as load:
            load.wait_for_acks(ACKS_PER_ROUND)
            children = process_tree(service.pid)[1:]
            assert children, "the store runs in a child process of the service"
            for child in children:
                os.kill(child, signal.SIGKILL)
            load.wait_for_acks(load.acks() + ACKS_PER_ROUND)  # it serves again
        assert {status for status, _ in load.unexpected} <= {503}
        assert not load.errors
    with serving(data_dir, log_path=log_path) as service:
        assert_bounded(stored(service.url), load.acknowledged, load.attempted)


def test_a_store_deleted_under_the_service_refuses_writes(data_dir: Path, log_path: Path) -> None:
    """Not 200s that the next start would not find: 503s, and /ready says so."""
    feedback = {"prediction": 1, "actual": 1}
    with (
        serving(data_dir, log_path=log_path) as service,
        httpx.Client(base_url=service.url, timeout=10.0) as client,
    ):
        assert client.post("/feedback", json=feedback).status_code == 200
        for path in data_dir.glob("feedback.sqlite3*"):
            path.unlink()
        refused = client.post("/feedback", json=feedback)
        assert (refused.status_code, refused.json()) == (503, {"error": "Store unavailable"})
        assert client.get("/ready").status_code == 503
