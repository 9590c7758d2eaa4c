"""Single-record POST /feedback against the service and against a bare ASGI app, same stack.

The ratio is against the bare app on uvicorn as its command line starts it (the issue's
ceiling); the same app on the service's own protocol (``protocol.py``, which saves a system
call per response) is printed beside it. Rounds alternate between the servers so that all see
the same machine noise; the figures are medians over rounds. Afterwards the stored counts are
read back: every 200 must be durable.
"""

import contextlib
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench import wrk
from feedback_monitor.testing import ServiceProcess, free_port, wait_for

ROUNDS = 3
SECONDS = 5
CEILING_GOAL, CEILING_FLOOR, P99_LIMIT = 0.8, 0.6, 0.005


def stored_total(url: str) -> int:
    text = httpx.get(url + "/metrics").text
    names = ("true_positives_total", "true_negatives_total", "false_positives_total",
             "false_negatives_total")  # fmt: skip
    return sum(
        int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines() if line.startswith(names)
    )


@contextlib.contextmanager
def bare_server(own_protocol: bool = False) -> Iterator[str]:
    """The ceiling's URL: ``bench.bare`` on uvicorn with the options of ``cli.serve``, or on the
    service's own protocol (``own_protocol``)."""
    port = free_port()
    command = [sys.executable, "-m", "bench.bare", str(port)] if own_protocol else [
        sys.executable, "-m", "uvicorn", "bench.bare:app", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--no-proxy-headers",
        "--no-server-header", "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(url + "/", process=process)
        yield url
    finally:
        process.terminate()
        process.wait()


def main() -> dict[str, float]:
    with (
        bare_server() as bare,
        bare_server(own_protocol=True) as bare_ours,
        tempfile.TemporaryDirectory() as tmp,
        ServiceProcess(Path(tmp), log=subprocess.DEVNULL) as service,
    ):
        for url in (service.url, bare, bare_ours):  # warm-up
            wrk.run(url + "/feedback", 1)
        stored_before = stored_total(service.url)
        ours, ceiling, ceiling_ours = [], [], []
        for _ in range(ROUNDS):
            ceiling.append(wrk.run(bare + "/feedback", SECONDS))
            ours.append(wrk.run(service.url + "/feedback", SECONDS))
            ceiling_ours.append(wrk.run(bare_ours + "/feedback", SECONDS))
        acknowledged = sum(r.ok for r in ours)
        stored = stored_total(service.url) - stored_before
    ours_rate = statistics.median(r.requests_per_second for r in ours)
    bare_rate = statistics.median(r.requests_per_second for r in ceiling)
    bare_ours_rate = statistics.median(r.requests_per_second for r in ceiling_ours)
    p50 = statistics.median(r.p50 for r in ours)
    p99 = statistics.median(r.p99 for r in ours)
    ratio = ours_rate / bare_rate
    print("POST /feedback, wrk -t1 -c32, one record per request")
    print(f"  feedback-monitor  {ours_rate:10.0f} req/s   p50 {p50 * 1e3:.2f} ms   "
          f"p99 {p99 * 1e3:.2f} ms")  # fmt: skip
    print(f"  bare ASGI app     {bare_rate:10.0f} req/s   (uvicorn as its CLI starts it)")
    print(f"  the same app      {bare_ours_rate:10.0f} req/s   (on the service's protocol.py: "
          f"ratio {ours_rate / bare_ours_rate:.2f})")  # fmt: skip
    verdict = "ok" if p99 <= P99_LIMIT else "MISSED"
    print(f"  ratio {ratio:.2f} (floor {CEILING_FLOOR}, goal {CEILING_GOAL}); "
          f"p99 limit {P99_LIMIT * 1e3:.0f} ms: {verdict}")  # fmt: skip
    durable = "ok" if stored >= acknowledged else "LOST FEEDBACK"
    print(
        f"  durability: {acknowledged} acknowledged (2xx seen by wrk), {stored} stored: {durable}"
    )
    return {
        "ratio": ratio,
        "p99": p99,
        "req_per_s": ours_rate,
        "bare_req_per_s": bare_rate,
        "bare_own_protocol_req_per_s": bare_ours_rate,
    }


if __name__ == "__main__":
    main()
