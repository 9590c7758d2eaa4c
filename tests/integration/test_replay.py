"""``feedback-monitor replay`` against a real server: CSV and JSON Lines counted once, a re-run
counting nothing twice, bad rows reported with nothing sent, and a dry run sending nothing."""

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from feedback_monitor import cli
from feedback_monitor import replay as replay_module
from feedback_monitor.testing import ServiceProcess
from tests.integration.helpers import serving
from tests.integration.views import Pair, cells, models

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One server; each test replays into models of its own."""
    root = tmp_path_factory.mktemp("replay")
    with serving(root / "data", log_path=root / "service.log") as started:
        yield started


def mix(count: int, seed: int) -> list[Pair]:
    rng = random.Random(seed)
    return [(rng.randint(0, 1), rng.randint(0, 1)) for _ in range(count)]


def replay(service: ServiceProcess, *argv: str) -> int:
    try:
        cli.main(["replay", *argv, "--url", service.url])
    except SystemExit as exit:
        return int(exit.code or 0)
    raise AssertionError("replay returns through SystemExit")


def counts(http: httpx.Client, model: str) -> dict[str, int] | None:
    entry = models(http).get((model, ""))
    return None if entry is None else dict(entry["counts"])


def test_a_csv_replay_counts_every_row_once_even_run_twice(
    service: ServiceProcess,
    client: httpx.Client,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pairs = mix(2_500, seed=1)
    path = tmp_path / "history.csv"
    path.write_text("y_hat,y,model\n" + "".join(f"{p},{a},csv\n" for p, a in pairs))
    flags = ("--prediction-column", "y_hat", "--actual-column", "y", "--batch-size", "1000")
    assert replay(service, str(path), *flags) == 0
    first = capsys.readouterr().out
    assert first.startswith("history.csv: 2,500 rows: 2,500 sent (2,500 counted, 0 duplicates)")
    assert counts(client, "csv") == cells(pairs)
    assert replay(service, str(path), *flags) == 0
    again = capsys.readouterr()
    assert again.out.startswith("history.csv: 2,500 rows: 2,500 sent (0 counted, 2,500 duplicates)")
    assert again.err.endswith(replay_module.ALL_DUPLICATES)  # says why, and what to do
    assert counts(client, "csv") == cells(pairs)


def test_a_json_lines_replay_with_ids_labels_stored_predictions(
    service: ServiceProcess, client: httpx.Client, tmp_path: Path
) -> None:
    stored = {"items": [{"id": f"j-{n}", "prediction": n % 2, "model": "jsonl"} for n in range(50)]}
    assert client.post("/predictions/batch", json=stored).status_code == 201
    rows = [{"request": f"j-{n}", "outcome": 1} for n in range(50)]
    rows += [{"request": f"k-{n}", "outcome": 0, "pred": 1, "model": "jsonl"} for n in range(30)]
    path = tmp_path / "labels.ndjson"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    flags = ("--id-column", "request", "--actual-column", "outcome", "--prediction-column", "pred")
    assert replay(service, str(path), *flags, "--batch-size", "25") == 0
    assert counts(client, "jsonl") == {"tp": 25, "tn": 0, "fp": 30, "fn": 25}


def test_bad_rows_are_reported_and_nothing_is_sent(
    service: ServiceProcess,
    client: httpx.Client,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("prediction,actual,model\n" + "1,1,bad\n" * 3000 + "1,yes,bad\n1,0,b d\n")
    assert replay(service, str(path), "--batch-size", "100") == 1
    assert capsys.readouterr().err.splitlines() == [
        "bad.csv:3002: Values must be 0 or 1",
        "bad.csv:3003: Invalid model: 1 to 64 characters, each a letter, a digit or one of _ . : -,"
        " but not . or ..",
        "replay: 2 of 3,002 rows are invalid; nothing was sent",
    ]
    assert counts(client, "bad") is None


def test_a_dry_run_sends_nothing(
    service: ServiceProcess, client: httpx.Client, tmp_path: Path
) -> None:
    path = tmp_path / "dry.jsonl"
    path.write_text('{"prediction": 1, "actual": 1}\n')
    assert replay(service, str(path), "--model", "dry", "--dry-run") == 0
    assert counts(client, "dry") is None


def test_the_command_line_stops_at_a_refused_row(service: ServiceProcess, tmp_path: Path) -> None:
    path = tmp_path / "conflict.csv"
    path.write_text("id,prediction,actual\na-1,1,1\na-2,0,0\na-1,1,0\n")
    command = [sys.executable, "-m", "feedback_monitor", "replay", str(path), "--url", service.url]
    done = subprocess.run([*command, "--model", "cli"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout.startswith("conflict.csv: 3 rows: 0 sent")
    assert (
        done.stderr == "replay: line 4: refused by the server (409): Conflicting feedback for id\n"
    )
