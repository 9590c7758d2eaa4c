"""Replicas on PostgreSQL: while the database stops (not ready, writes refused with 503 and a
clear error, nothing acknowledged lost, and back to work once it returns), and creating series
at once under the cap."""

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.integration import postgres
from tests.integration.helpers import scrape, wait_until
from tests.integration.test_cardinality import assert_refused_for_the_cap
from tests.integration.test_set_check import Clients, Database, assert_served, check, replicas
from tests.integration.views import series_on, series_state

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


def test_replicas_creating_series_at_once_stop_at_the_cap(
    cluster: postgres.Cluster, tmp_path: Path
) -> None:
    """Each replica knows the others' series only as of its last reload, a second ago: the
    store, which sees them all, keeps the cap. 120 new names sent at once to three replicas,
    with and without ids (the Python client sends ids): 7 stored, every other one a 422."""
    url, cap = cluster.database("cap"), 7
    with replicas(url, tmp_path, 3, "--max-series", str(cap)) as services:
        urls = itertools.cycle([s.url for s in services])

        async def send(n: int, to: str) -> tuple[int, dict[str, object]]:
            body: dict[str, object] = {"prediction": 1, "actual": n % 2, "model": f"m{n}"}
            if n % 2:
                body["id"] = f"id-{n}"
            async with httpx.AsyncClient(timeout=30.0) as client:
                answer = await client.post(to + "/feedback", json=body)
                return answer.status_code, answer.json()

        async def all_at_once() -> list[tuple[int, dict[str, object]]]:
            return await asyncio.gather(*(send(n, next(urls)) for n in range(120)))

        answers = asyncio.run(all_at_once())
        assert sum(status == 200 for status, _ in answers) == cap
        for status, body in answers:
            if status != 200:
                assert_refused_for_the_cap(status, body, cap)
        with psycopg.connect(url) as db:
            stored = db.execute("SELECT DISTINCT model FROM confusion").fetchall()
            assert len(stored) == cap
            ids = db.execute("SELECT count(*) FROM outcomes").fetchone()
        accepted_ids = sum(status == 200 and n % 2 for n, (status, _) in enumerate(answers))
        assert ids == (accepted_ids,)  # a refused feedback leaves no id behind
        for service in services:  # each replica's /metrics, once reloaded: the same 7
            with httpx.Client(base_url=service.url, timeout=10.0) as client:

                def exported(client: httpx.Client = client) -> int:
                    state = series_state(scrape(client))
                    return len(series_on(state, names={name for name, _ in state}))

                wait_until(lambda: exported() == cap, 10.0, "every series reloaded", 0.1)
