"""Issue 3's figures: batch ingestion, single records with labels and ids, /metrics at 1,000 series.

- 10,000-item batches to POST /feedback/batch with wrk (one thread, a few connections): items/s,
  of seed records and of records that name their model and version.
- Batches with ids, one client sending one after another: predictions to POST /predictions/batch
  (each id new), then their labels to POST /feedback/batch (each joins its prediction).
- Single records carrying model, version and a fresh id each (so every one is an idempotency
  key written to the store), beside the plain seed record and the bare ASGI ceiling, same run;
  then with UUIDv7 ids (as the client makes them) and random UUIDv4 ids, each of which lands
  on its own page of the store's index of ids; and single predictions, each with a new id.
- GET /metrics once the store holds 1,000 series: the median time of a scrape.
"""

import json
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench import wrk
from bench.http_throughput import bare_server
from feedback_monitor.testing import ServiceProcess

BATCH_ITEMS = 10_000
ITEMS_GOAL = 3_000_000
SECONDS = 5
METRICS_SERIES = 1000
METRICS_LIMIT = 0.020
KEYED_BATCHES = 20
FEEDBACK = '{"prediction": 1, "actual": %d, "model": "fraud", "version": "v3", "id": "%s"}'
PREDICTION = '{"prediction": %d, "model": "fraud", "version": "v3", "id": "%s"}'


def batch_script(path: Path, **names: str) -> str:
    items = [{"prediction": i % 2, "actual": (i // 3) % 2, **names} for i in range(BATCH_ITEMS)]
    path.write_text(json.dumps({"items": items}))
    return f"""
wrk.method = "POST"
local f = io.open("{path}", "rb")
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "application/json"
"""


def labelled_script(ids: str = "counter", body: str = FEEDBACK) -> str:
    """Each request ``body`` (``FEEDBACK`` or ``PREDICTION``) with a new id: ``counter``, the
    run's prefix and a counter (unique across runs too); ``uuid7``, a UUIDv7 as the client
    makes them (the milliseconds since 1970, here counted at 20 requests a millisecond, then
    random bits); or ``uuid4``, random throughout, which lands anywhere in the store's index of
    ids."""
    prefix = uuid.uuid4().hex[:12]
    new_id = {
        "counter": f'string.format("{prefix}-%d", counter)',
        "uuid7": (
            'string.format("%012x7%03x%04x%012x", start + math.floor(counter / 20),'
            " math.random(0, 0xfff), math.random(0x8000, 0xbfff), math.random(0, 0xffffffffffff))"
        ),
        "uuid4": (
            'string.format("%08x-%04x-4%03x-%04x-%012x", math.random(0, 0xffffffff),'
            " math.random(0, 0xffff), math.random(0, 0xfff), math.random(0x8000, 0xbfff),"
            " math.random(0, 0xffffffffffff))"
        ),
    }[ids]
    return f"""
math.randomseed({uuid.uuid4().int % 2**31})
start = {time.time_ns() // 1_000_000}
counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{body}', counter % 2, {new_id})
  return wrk.format("POST", nil, {{["Content-Type"] = "application/json"}}, body)
end
"""


def keyed_rates(url: str) -> tuple[float, float]:
    """Predictions, then their labels, per second: ``KEYED_BATCHES`` batches of each."""
    prefixes = [uuid.uuid4().hex[:12] for _ in range(KEYED_BATCHES)]
    predictions = [
        [{"id": f"{p}-{i}", "prediction": i % 2, "model": "keyed", "score": i % 100 / 100}
         for i in range(BATCH_ITEMS)]
        for p in prefixes
    ]  # fmt: skip
    labels = [
        [{"id": f"{p}-{i}", "actual": i // 3 % 2} for i in range(BATCH_ITEMS)] for p in prefixes
    ]
    rates = []
    with httpx.Client(timeout=60) as client:
        for path, batches in (("/predictions/batch", predictions), ("/feedback/batch", labels)):
            bodies = [json.dumps({"items": items}) for items in batches]
            headers = {"Content-Type": "application/json"}
            start = time.perf_counter()
            for body in bodies:
                client.post(url + path, content=body, headers=headers).raise_for_status()
            rates.append(KEYED_BATCHES * BATCH_ITEMS / (time.perf_counter() - start))
    return rates[0], rates[1]


def stored_ids(url: str) -> int:
    """The feedback of the labelled series: each came with an id of its own."""
    models = httpx.get(url + "/api/v1/models").json()["models"]
    return sum(sum(m["counts"].values()) for m in models if m["model"] == "fraud")


def scrape_time(url: str) -> float:
    with httpx.Client() as client:
        items = [{"prediction": 1, "actual": 1, "model": f"m{i}"} for i in range(METRICS_SERIES)]
        client.post(url + "/feedback/batch", json={"items": items}).raise_for_status()
        times = []
        for _ in range(30):
            start = time.perf_counter()
            client.get(url + "/metrics").raise_for_status()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> dict[str, float]:
    with (
        bare_server() as bare,
        tempfile.TemporaryDirectory() as tmp,
        ServiceProcess(
            Path(tmp) / "data", "--max-series", "2000", log=subprocess.DEVNULL
        ) as service,
    ):
        script = batch_script(Path(tmp) / "batch.json")
        wrk.run(service.url + "/feedback/batch", 1, connections=4, script=script)  # warm-up
        batches = wrk.run(service.url + "/feedback/batch", SECONDS, 4, script)
        named = batch_script(Path(tmp) / "named.json", model="named", version="v3")
        named_batches = wrk.run(service.url + "/feedback/batch", SECONDS, 4, named)
        predictions_rate, labels_rate = keyed_rates(service.url)
        ceiling, seed, predictions = [], [], []
        labelled: dict[str, list[wrk.WrkResult]] = {"counter": [], "uuid7": [], "uuid4": []}

        def labelled_run(kind: str) -> None:
            script = labelled_script(kind)
            labelled[kind].append(wrk.run(service.url + "/feedback", SECONDS, script=script))

        for _ in range(3):
            ceiling.append(wrk.run(bare + "/feedback", SECONDS))
            seed.append(wrk.run(service.url + "/feedback", SECONDS))
            labelled_run("counter")
            labelled_run("uuid7")
            predictions.append(
                wrk.run(
                    service.url + "/predictions", SECONDS, script=labelled_script(body=PREDICTION)
                )
            )
        for _ in range(3):  # last: random ids scatter the index the runs above add to
            ceiling.append(wrk.run(bare + "/feedback", SECONDS))
            labelled_run("uuid4")
        ids = stored_ids(service.url)
        scrape = scrape_time(service.url)
    items_per_second = batches.requests_per_second * BATCH_ITEMS
    bare_rate = statistics.median(r.requests_per_second for r in ceiling)
    print(f"POST /feedback/batch, {BATCH_ITEMS}-item batches, wrk -t1 -c4")
    print(f"  {items_per_second:12,.0f} items/s (goal {ITEMS_GOAL:,}); "
          f"{batches.non_2xx} non-2xx")  # fmt: skip
    named_rate = named_batches.requests_per_second * BATCH_ITEMS
    print(f"  {named_rate:12,.0f} items/s naming model and version; "
          f"{named_batches.non_2xx} non-2xx")  # fmt: skip
    print(
        f"Batches with ids, {BATCH_ITEMS}-item, one client: {predictions_rate:,.0f} predictions/s"
        f" (each id new), then {labels_rate:,.0f} labels/s (each joins its prediction)"
    )
    print("Single records, wrk -t1 -c32 (medians of 3 rounds): POST /feedback; POST /predictions,"
          " each a new id")  # fmt: skip
    for name, runs in (
        ("seed record", seed),
        ("model+version+id", labelled["counter"]),
        ("... id a UUIDv7", labelled["uuid7"]),
        ("... id a UUIDv4", labelled["uuid4"]),
        ("POST /predictions", predictions),
    ):
        rate = statistics.median(r.requests_per_second for r in runs)
        p99 = statistics.median(r.p99 for r in runs)
        print(f"  {name:18} {rate:8.0f} req/s  ratio {rate / bare_rate:.2f}  "
              f"p99 {p99 * 1e3:.2f} ms")  # fmt: skip
    print(f"  {'bare ASGI app':18} {bare_rate:8.0f} req/s")
    print(f"  ({ids:,} ids stored at the end; model+version+id: the run's prefix and a counter)")
    verdict = "ok" if scrape < METRICS_LIMIT else "MISSED"
    print(f"GET /metrics with {METRICS_SERIES} series: median {scrape * 1e3:.1f} ms "
          f"(limit {METRICS_LIMIT * 1e3:.0f} ms): {verdict}")  # fmt: skip
    return {"items_per_second": items_per_second, "metrics_seconds": scrape}


if __name__ == "__main__":
    main()
