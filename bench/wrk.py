"""Runs wrk (Debian package ``wrk``) and reads its summary."""

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

POST_FEEDBACK = """
wrk.method = "POST"
wrk.body   = '{"prediction": 1, "actual": 0}'
wrk.headers["Content-Type"] = "application/json"
"""

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class WrkResult:
    requests: int
    non_2xx: int
    requests_per_second: float
    p50: float
    p99: float

    @property
    def ok(self) -> int:
        return self.requests - self.non_2xx


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse(output: str) -> WrkResult:
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1)  # type: ignore[union-attr]
    return WrkResult(
        requests, int(non_2xx.group(1)) if non_2xx else 0, rate, _seconds(p50), _seconds(p99)
    )


def run(url: str, seconds: int, connections: int = 32, script: str = POST_FEEDBACK) -> WrkResult:
    """One wrk run with one thread, as the issue specifies, and latency percentiles."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp) / "post.lua"
        lua.write_text(script)
        command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua)]
        output = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    return parse(output)
