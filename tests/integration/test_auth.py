"""Bearer tokens on a real server: flags, the token file, and tokens kept out of every log."""

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.helpers import serving, wait_until

pytestmark = pytest.mark.integration

API_TOKEN = "api-token-5b0e1c2f9a7d"
READER = "reader-token-0c4e7a9d1b3f"
FEEDBACK = {"prediction": 1, "actual": 1}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_tokens_guard_writes_and_reads_and_are_never_logged(tmp_path: Path, log_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# dashboards\n{READER} read\n")
    args = ("--api-token", API_TOKEN, "--token-file", str(tokens), "--protect-reads")
    with (
        serving(tmp_path / "data", *args, "--log-level", "debug", log_path=log_path) as service,
        httpx.Client(base_url=service.url, timeout=10.0) as client,
    ):
        assert client.post("/feedback", json=FEEDBACK).status_code == 401
        assert client.post("/feedback", json=FEEDBACK, headers=bearer(READER)).status_code == 403
        wrong = bearer(API_TOKEN + "x")
        assert client.post("/feedback", json=FEEDBACK, headers=wrong).status_code == 401
        assert client.post("/feedback", json=FEEDBACK, headers=bearer(API_TOKEN)).status_code == 200
        assert client.get("/metrics").status_code == 401
        metrics = client.get("/metrics", headers=bearer(READER))
        assert metrics.status_code == 200
        assert "true_positives_total" in metrics.text
        config = client.get("/api/v1/config", headers=bearer(READER)).json()
        assert config["protect_reads"] is True
        assert "api_token" not in config
        assert "token_file" not in config
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200
        wait_until(lambda: log_path.read_text().count("rejected") >= 4, what="the rejections")
        service.terminate()
    logged = log_path.read_text()
    assert "401" in logged
    for secret in (API_TOKEN, READER, str(tokens)):
        assert secret not in logged


def serve_exit(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "feedback_monitor", "serve", "--port", "0"]
    command += ["--data-dir", str(tmp_path / "data"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_a_bad_token_file_stops_the_start_naming_the_line(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("good-token-1 write\nsecret-token-2 admin\n")
    finished = serve_exit(tmp_path, "--token-file", str(tokens))
    assert finished.returncode == 2
    assert "token_file" in finished.stderr
    assert "line 2: scopes are write and read" in finished.stderr
    assert "secret-token-2" not in finished.stderr


def test_protect_reads_without_tokens_stops_the_start(tmp_path: Path) -> None:
    finished = serve_exit(tmp_path, "--protect-reads")
    assert finished.returncode == 2
    assert "protect_reads needs api_token or token_file" in finished.stderr
