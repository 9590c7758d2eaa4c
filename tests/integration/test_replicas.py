"""Replicas on PostgreSQL while the database stops: not ready, writes refused with 503 and a
clear error, nothing acknowledged lost, and back to work once it returns."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.integration import postgres
from tests.integration.helpers import wait_until
from tests.integration.test_set_check import Clients, Database, assert_served, check, replicas

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[postgres.Cluster]:
    with postgres.cluster() as started:
        yield started


def status(url: str) -> int:
    try:
        return httpx.get(url + "/ready", timeout=5.0).status_code
    except httpx.TransportError:
        return 0


def all_ready(urls: list[str], expected: int) -> bool:
    return all(status(url) == expected for url in urls)


def test_a_stopped_database_refuses_writes_and_recovery_follows(
    cluster: postgres.Cluster, tmp_path: Path
) -> None:
    url = cluster.database("outage")
    with replicas(url, tmp_path, 2) as services:
        urls = [s.url for s in services]
        clients = Clients(urls, threads=4, seed=3, tolerated=frozenset({503}))
        with clients:
            clients.wait_for_acks(200)
            cluster.server("stop")
            try:
                wait_until(lambda: all_ready(urls, 503), 20.0, "not ready", 0.1)
                refused = httpx.post(urls[0] + "/feedback", json={"prediction": 1, "actual": 1},
                                     timeout=30.0)  # fmt: skip
                assert refused.status_code == 503
                assert refused.json() == {"error": "Store unavailable"}
            finally:
                cluster.server("start")
            wait_until(lambda: all_ready(urls, 200), 30.0, "ready again", 0.1)
            clients.wait_for_acks(clients.acks() + 200)
        with psycopg.connect(url) as db:
            database = Database(lambda query: db.execute(query).fetchall())
        check(clients.ledger, database)
        assert_served(urls, database.counts)
