"""Resident memory of the service over 1,000,000 feedbacks: it must stay flat (< 10 MB growth)."""

import subprocess
import tempfile
from pathlib import Path

from bench import wrk
from bench.http_throughput import stored_total
from feedback_monitor.testing import ServiceProcess

WARM_UP = 100_000
FEEDBACKS = 1_000_000
LIMIT_MB = 10.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def send_until(url: str, total: int) -> None:
    while stored_total(url) < total:
        wrk.run(url + "/feedback", 5)


def main() -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        ServiceProcess(Path(tmp), log=subprocess.DEVNULL) as service,
    ):
        send_until(service.url, WARM_UP)
        start = stored_total(service.url)
        pids = [service.pid, *children(service.pid)]
        before = [rss_mb(pid) for pid in pids]
        send_until(service.url, start + FEEDBACKS)
        sent = stored_total(service.url) - start
        after = [rss_mb(pid) for pid in pids]
    growth = sum(after) - sum(before)
    print(f"Memory over {sent} feedbacks after a {WARM_UP} warm-up (server + store process)")
    for pid, b, a in zip(pids, before, after, strict=True):
        print(f"  pid {pid}: {b:.1f} MB -> {a:.1f} MB")
    print(f"  growth {growth:+.1f} MB (limit {LIMIT_MB:.0f} MB): "
          f"{'ok' if growth < LIMIT_MB else 'MISSED'}")  # fmt: skip
    return {"rss_growth_mb": growth}


if __name__ == "__main__":
    main()
