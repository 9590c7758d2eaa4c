"""A real Prometheus (Debian ``prometheus``) for the tests, and the deploy/ files it checks.

The rules under test are ``deploy/prometheus/rules/feedback-monitor.rules.yml`` itself; for a
test that lasts seconds, ``short_windows`` rewrites its durations (and nothing else) to seconds.
"""

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NoReturn

import httpx
import pytest

from feedback_monitor.testing import free_port, wait_for
from tests.integration.helpers import Labels

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "feedback-monitor.rules.yml"
RULE_TESTS = sorted((RULES.parent / "tests").glob("*.yml"))
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
JOB = "feedback-monitor"  # the job name the alerts expect

TEST_WINDOWS = {"5m": "30s", "1h": "60s", "1d": "120s", "1w": "240s", "2m": "5s"}
"""Each window (range or offset) of the rules and its stand-in in the short variant (2m: how far
back the merged counters look for a replica's latest value, two scrapes at least)."""
TEST_FOR = "1s"
"""Every alert's ``for:`` in the short variant: the hold times are promtool's to test."""
_WINDOW = re.compile(r"(?<=\[)(\w+)(?=\])|(?<=offset )(\w+)")
_FOR = re.compile(r"^(\s*for:) \S+$", re.MULTILINE)


def short_windows(rules: str) -> str:
    """``rules`` with every range ``[d]`` and ``offset d`` mapped by ``TEST_WINDOWS`` and every
    ``for:`` set to ``TEST_FOR``; the record and alert names stay. A window missing from the
    table is a KeyError, so a new window in the rules cannot slip through at full length."""
    windowed = _WINDOW.sub(lambda match: TEST_WINDOWS[match.group()], rules)
    return _FOR.sub(rf"\1 {TEST_FOR}", windowed)


def require(binary: str, package: str) -> str:
    """The path of ``binary``; without it a skip, or a failure on CI (which installs it)."""
    path = shutil.which(binary)
    if path is None:
        missing(f"{binary} not found (Debian package {package})")
    return path


def missing(message: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """A command's exit status and output (a check tool's: it must not hang)."""
    return subprocess.run(
        [str(arg) for arg in args], capture_output=True, text=True, timeout=120, check=False
    )


Vector = dict[Labels, float]


def write_config(directory: Path, target: str, rules: str) -> Path:
    """A configuration scraping ``target`` every second, ``rules`` evaluated every second."""
    rules_path = directory / "rules.yml"
    rules_path.write_text(rules)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_path)],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
    }
    config_path = directory / "prometheus.yml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    return config_path


@contextlib.contextmanager
def prometheus(directory: Path, target: str, rules: str, log: IO[bytes]) -> Iterator["Prometheus"]:
    """``prometheus`` on a free loopback port with its data in ``directory``, scraping ``target``
    with ``rules``; stopped (SIGTERM, then SIGKILL after 30 s) at the end."""
    address = f"127.0.0.1:{free_port()}"
    args = [
        require("prometheus", "prometheus"),
        f"--config.file={write_config(directory, target, rules)}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address={address}",
    ]
    with (
        subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT) as process,
        httpx.Client(base_url=f"http://{address}", timeout=10.0) as http,
    ):
        try:
            wait_for(f"http://{address}/-/ready", process=process)
            yield Prometheus(http)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30.0)
            except subprocess.TimeoutExpired:
                process.kill()  # Popen's exit then reaps it


class Prometheus:
    """The HTTP API of a running Prometheus."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def get(self, path: str, **params: str) -> Any:
        """The ``data`` of a successful API answer."""
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()["data"]

    def query(self, expr: str) -> Vector:
        """An instant query's vector, by sorted labels (``__name__`` included)."""
        return {
            tuple(sorted(sample["metric"].items())): float(sample["value"][1])
            for sample in self.get("/api/v1/query", query=expr)["result"]
        }

    def latest(self, selector: str) -> dict[Labels, tuple[float, float]]:
        """The last sample (time, value) of each series ``selector`` matches, by sorted labels
        (``__name__`` included): unlike ``timestamp()``, this keeps the names apart."""
        result = self.get("/api/v1/query", query=f"{selector}[1m]")["result"]
        return {
            tuple(sorted(series["metric"].items())): (float(time), float(value))
            for series in result
            for time, value in series["values"][-1:]
        }

    def alerts(self) -> list[dict[str, Any]]:
        """The active (pending or firing) alerts."""
        alerts: list[dict[str, Any]] = self.get("/api/v1/alerts")["alerts"]
        return alerts
