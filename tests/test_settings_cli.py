"""Settings from the environment and the command line; invalid settings exit 2 in one line."""

import functools
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from feedback_monitor import cli
from feedback_monitor.confusion import Costs
from feedback_monitor.settings import CostMatrix, LogFormat, LogLevel, Settings
from feedback_monitor.store.sqlite import FILENAME as SQLITE_FILENAME
from feedback_monitor.store.sqlite import SQLiteStore
from feedback_monitor.windows import Retention

PREFIX = "FEEDBACK_MONITOR_"


def make_settings(**values: Any) -> Settings:
    # Settings' fields give their defaults positionally to Field(), which mypy's
    # dataclass_transform support does not see: a direct call would look like it lacks arguments.
    return Settings(**values)


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FEEDBACK_MONITOR_* variable leaks in from the machine running the tests."""
    for name in os.environ:
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def root_logging() -> Iterator[None]:
    """``serve`` sets the root logger's handlers up on the stderr of its test (capsys's, closed
    after it): the handlers before it are put back, so later tests' logs do not fail."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """The settings ``main`` would serve with; nothing is started."""
    calls: list[Settings] = []
    monkeypatch.setattr(cli, "serve", calls.append)
    return calls


def test_defaults_are_the_documented_ones() -> None:
    settings = make_settings()
    assert (settings.host, settings.port, settings.data_dir) == ("127.0.0.1", 5000, Path("data"))
    assert (settings.log_level, settings.log_format) == (LogLevel.INFO, LogFormat.TEXT)
    assert settings.max_body_bytes == 1024 * 1024
    assert (settings.max_series, settings.prediction_ttl) == (1000, timedelta(days=30))
    assert (settings.max_batch_items, settings.max_batch_body_bytes) == (10_000, 32 * 1024 * 1024)


ENVIRONMENT = {
    "HOST": "0.0.0.0",
    "PORT": "6123",
    "DATA_DIR": "/var/lib/feedback",
    "LOG_LEVEL": "debug",
    "LOG_FORMAT": "json",
    "MAX_BODY_BYTES": "4096",
    "MAX_SERIES": "7",
    "PREDICTION_TTL": "P7DT12H",
    "MAX_BATCH_ITEMS": "100",
    "MAX_BATCH_BODY_BYTES": "8192",
    "RETENTION": "minute=6h,day=3650d",
    "COSTS": '{"*": {"fp": -1}, "fraud:v2": {"tp": 10, "fn": -50}}',
    "STORE": "postgresql://monitor@db.internal/feedback",
    "API_TOKEN": "env-token-1",
    "TOKEN_FILE": "",  # a real file, written by the test
    "PROTECT_READS": "true",
    "RATE_LIMIT": "50",
    "HEADER_TIMEOUT": "5",
    "BODY_TIMEOUT": "7.5",
    "WRITE_TIMEOUT": "2.5",
    "SHUTDOWN_TIMEOUT": "9",
}


def test_every_setting_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("file-token-1 write\nfile-token-2 read\n")
    for name, value in {**ENVIRONMENT, "TOKEN_FILE": str(tokens)}.items():
        monkeypatch.setenv(PREFIX + name, value)
    settings = make_settings()
    assert settings.host == "0.0.0.0"
    assert settings.port == 6123
    assert settings.data_dir == Path("/var/lib/feedback")
    assert settings.log_level is LogLevel.DEBUG
    assert settings.log_format is LogFormat.JSON
    assert settings.max_body_bytes == 4096
    assert (settings.max_series, settings.prediction_ttl) == (7, timedelta(days=7, hours=12))
    assert (settings.max_batch_items, settings.max_batch_body_bytes) == (100, 8192)
    assert settings.retention == Retention(minute=6 * 3600, hour=90 * 86400, day=3650 * 86400)
    assert settings.costs_of("fraud", "v2") == Costs(tp=10.0, tn=0.0, fp=0.0, fn=-50.0)
    assert settings.costs_of("fraud", "v1") == Costs(tp=0.0, tn=0.0, fp=-1.0, fn=0.0)
    assert settings.store == "postgresql://monitor@db.internal/feedback"
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "env-token-1"
    assert (settings.token_file, settings.protect_reads) == (tokens, True)
    assert (settings.rate_limit, settings.header_timeout, settings.body_timeout) == (50, 5, 7.5)
    assert settings.shutdown_timeout == 9
    assert {PREFIX + field.upper() for field in Settings.model_fields} == {
        PREFIX + name for name in ENVIRONMENT
    }  # the environment above covers every setting


def test_every_setting_has_a_flag(served: list[Settings], tmp_path: Path) -> None:
    cli.main(
        ["serve", "--host", "::1", "--port", "0", "--data-dir", str(tmp_path),
         "--log-level", "warning", "--log-format", "json", "--max-body-bytes", "2048",
         "--max-series", "3", "--prediction-ttl", "PT1H", "--max-batch-items", "5",
         "--max-batch-body-bytes", "4096", "--retention", "hour=30d",
         "--costs", '{"m": {"fn": -2.5}}']
    )  # fmt: skip
    assert served == [
        make_settings(
            host="::1",
            port=0,
            data_dir=tmp_path,
            log_level=LogLevel.WARNING,
            log_format=LogFormat.JSON,
            max_body_bytes=2048,
            max_series=3,
            prediction_ttl=timedelta(hours=1),
            max_batch_items=5,
            max_batch_body_bytes=4096,
            retention=Retention(hour=30 * 86400),
            costs={"m": CostMatrix(fn=-2.5)},
        )
    ]


def test_flags_override_the_environment_field_by_field(
    monkeypatch: pytest.MonkeyPatch, served: list[Settings]
) -> None:
    monkeypatch.setenv(PREFIX + "PORT", "6000")
    monkeypatch.setenv(PREFIX + "LOG_FORMAT", "json")
    cli.main(["serve", "--port", "7000"])
    (settings,) = served
    assert settings.port == 7000  # the flag wins
    assert settings.log_format is LogFormat.JSON  # no flag: the environment
    assert settings.host == make_settings().host  # neither: the default


@pytest.mark.parametrize(
    ("flags", "setting"),
    [
        (["--port", "70000"], "port"),
        (["--port", "-1"], "port"),
        (["--port", "http"], "port"),
        (["--log-format", "xml"], "log_format"),
        (["--log-level", "verbose"], "log_level"),
        (["--max-body-bytes", "10"], "max_body_bytes"),
        (["--host", ""], "host"),
        (["--max-series", "0"], "max_series"),
        (["--max-series", "many"], "max_series"),
        (["--prediction-ttl", "PT0S"], "prediction_ttl"),
        (["--prediction-ttl=-P1D"], "prediction_ttl"),
        (["--prediction-ttl", "soon"], "prediction_ttl"),
        (["--max-batch-items", "0"], "max_batch_items"),
        (["--max-batch-body-bytes", "100"], "max_batch_body_bytes"),
        (["--prediction-ttl", "PT0.5S"], "prediction_ttl"),  # the sweep would spin
        (["--prediction-ttl", "1.5"], "prediction_ttl"),
        (["--prediction-ttl", "0d"], "prediction_ttl"),
        (["--prediction-ttl", "1x"], "prediction_ttl"),
        (["--body-timeout", "inf"], "body_timeout"),
        (["--header-timeout", "nan"], "header_timeout"),
        (["--rate-limit", "1e-320"], "rate_limit"),
        (["--costs", '{"*": {"tp": NaN}}'], "costs"),
        (["--costs", '{"fraud": {"fp": Infinity}}'], "costs"),
        (["--costs", '{"*": {"tp": 1e308, "fp": -1e308}}'], "costs"),  # a sum would be NaN
        (["--costs", '{"*": {"fn": -1.0000001e12}}'], "costs"),
    ],
)
def test_an_invalid_flag_exits_2_with_one_line(
    flags: list[str], setting: str, served: list[Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    out, err = refused(["serve", *flags], capsys)
    assert served == []
    assert out == ""
    assert_one_line_naming(err, setting)


@pytest.mark.parametrize(
    ("variable", "value", "setting"),
    [
        ("COSTS", "{", "costs"),
        ("COSTS", "", "costs"),
        ("COSTS", "null", "costs"),
        ("COSTS", '{"*": {"tp": NaN}}', "costs"),
        ("BODY_TIMEOUT", "inf", "body_timeout"),
        ("RATE_LIMIT", "1e-320", "rate_limit"),
    ],
)
def test_an_invalid_environment_value_exits_2_with_one_line(
    variable: str,
    value: str,
    setting: str,
    served: list[Settings],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PREFIX + variable, value)
    out, err = refused(["serve"], capsys)
    assert served == []
    assert out == ""
    assert_one_line_naming(err, setting)


@pytest.mark.parametrize(
    ("flags", "setting"),
    [
        (["--store", "postgresql://user:pa55word@127.0.0.1:1/db"], "store"),  # nobody listens
        (["--data-dir", "/proc/no/such/dir"], "data_dir"),
    ],
)
def test_a_store_that_cannot_be_opened_exits_2_with_one_line(
    flags: list[str], setting: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its setting is named, but not as invalid: its value may well be right."""
    out, err = refused(["serve", "--data-dir", str(tmp_path), *flags], capsys)
    assert out == ""
    assert_one_line_naming(err, setting)
    assert "cannot open the store" in err
    assert "invalid setting" not in err
    assert "pa55" not in err


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:pa55word@[::1/db",  # not a URL
        "postgresql://user:pa55word%zz@127.0.0.1:1/db",  # libpq quotes it
        "postgresql://user:pa55 word@127.0.0.1:1/db",
    ],
)
def test_a_store_url_libpq_cannot_read_is_an_invalid_setting(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, err = refused(["serve", "--data-dir", str(tmp_path), "--store", url], capsys)
    assert out == ""
    assert_one_line_naming(err, "store")
    assert err.startswith("feedback-monitor: error: invalid setting store (--store, ")
    assert "pa55" not in err


def test_a_data_dir_another_server_holds_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said "database is locked"; no waiting here for the holder to let go."""
    monkeypatch.setattr(cli, "SQLiteStore", functools.partial(SQLiteStore, lock_timeout=0))
    holder = SQLiteStore(tmp_path)
    try:
        _, err = refused(["serve", "--data-dir", str(tmp_path)], capsys)
    finally:
        holder.close()
    assert_one_line_naming(err, "data_dir")
    assert f"data_dir {tmp_path} (" in err
    assert f"another process holds {SQLITE_FILENAME}" in err
    assert "another feedback-monitor server" in err


def test_a_data_dir_whose_database_is_a_directory_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / SQLITE_FILENAME).mkdir()
    _, err = refused(["serve", "--data-dir", str(tmp_path)], capsys)
    assert_one_line_naming(err, "data_dir")


def test_a_rule_across_settings_names_no_variable(
    served: list[Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    _, err = refused(["serve", "--protect-reads"], capsys)
    assert err.count("\n") == 1
    assert "protect_reads needs api_token or token_file" in err
    assert "FEEDBACK_MONITOR_SETTINGS" not in err


@pytest.mark.parametrize("where", ["flag", "environment"])
@pytest.mark.parametrize(
    ("text", "ttl"),
    [("3600", timedelta(hours=1)), ("90m", timedelta(minutes=90)), ("2w", timedelta(weeks=2)),
     ("30d", timedelta(days=30)), ("PT1H", timedelta(hours=1))],
)  # fmt: skip
def test_prediction_ttl_in_seconds_units_or_iso_8601(
    where: str, text: str, ttl: timedelta, served: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    if where == "flag":
        cli.main(["serve", "--prediction-ttl", text])
    else:
        monkeypatch.setenv(PREFIX + "PREDICTION_TTL", text)
        cli.main(["serve"])
    assert [settings.prediction_ttl for settings in served] == [ttl]


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """What ``main`` wrote when it refused to start: exit 2."""
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    return out, err


def assert_one_line_naming(stderr: str, setting: str) -> None:
    """One line that names the setting, and its flag or its environment variable."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert setting in lines[0]
    named = {PREFIX + setting.upper(), "--" + setting.replace("_", "-")} & set(
        re.split(r"[ (),]", lines[0])
    )
    assert named, lines[0]
    assert "Traceback" not in stderr


def test_the_error_names_where_the_invalid_value_came_from(
    served: list[Settings], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, err = refused(["serve", "--port", "70000"], capsys)
    assert "(--port)" in err
    monkeypatch.setenv(PREFIX + "PORT", "70000")
    _, err = refused(["serve"], capsys)
    assert f"({PREFIX}PORT)" in err
    monkeypatch.delenv(PREFIX + "PORT")
    _, err = refused(["serve", "--prediction-ttl", "1.5"], capsys)
    assert err.endswith("(--prediction-ttl): not a duration: '1.5' (seconds, a number with s, m, h,"
                        " d or w such as 30d, or ISO 8601 such as P30D)\n")  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "environment", "setting"),
    [
        (["--port", "70000"], {}, "port"),
        ([], {"PORT": "70000"}, "port"),
        (["--log-format", "xml"], {}, "log_format"),
        ([], {"LOG_FORMAT": "xml"}, "log_format"),
    ],
    ids=["port flag", "port env", "log-format flag", "log-format env"],
)
def test_the_command_exits_2_on_an_invalid_setting(
    tmp_path: Path, flags: list[str], environment: dict[str, str], setting: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    env.update({PREFIX + name: value for name, value in environment.items()})
    # Were the setting wrongly accepted, the server would start: the data dir and the timeout
    # keep that contained.
    command = [sys.executable, "-m", "feedback_monitor", "serve", "--data-dir", str(tmp_path)]
    done = subprocess.run(
        [*command, *flags], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert_one_line_naming(done.stderr, setting)


@pytest.mark.parametrize("host", ["127.0.0.1", "192.0.2.1"], ids=["taken", "not this machine's"])
def test_an_address_that_cannot_be_listened_on_exits_2_with_one_line(
    tmp_path: Path, host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        _, err = refused(
            ["serve", "--host", host, "--port", port, "--data-dir", str(tmp_path)], capsys
        )
    assert err.startswith(
        f"feedback-monitor: error: cannot listen on {host}:{port} (--host, --port): "
    )
    assert err.count("\n") == 1
    assert not (tmp_path / SQLITE_FILENAME).exists()  # refused before the store was opened


def test_only_the_password_as_libpq_quotes_it_is_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A password of "1" is also a digit of the address: the address stays whole."""
    flags = ["serve", "--data-dir", str(tmp_path), "--store", "postgresql://user:1@127.0.0.1:1/db"]
    _, err = refused(flags, capsys)
    assert "127.0.0.1" in err
    assert "(the password)" not in err


def test_a_misspelt_environment_variable_is_warned_of(
    served: list[Settings], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flag misspelt is refused by argparse; its variable would be ignored without a word."""
    monkeypatch.setenv(PREFIX + "MAX_SERIE", "3")
    monkeypatch.setenv(PREFIX + "TOKEN", "the clients' token")  # report's and replay's: known
    cli.main(["serve"])
    assert served[0].max_series == 1000
    assert capsys.readouterr().err == (
        f"feedback-monitor: warning: {PREFIX}MAX_SERIE is no setting: ignored (a misspelling?)\n"
    )


@pytest.mark.parametrize(
    "command", [["report", "--model", "m", "--out", "r.html"], ["replay", "history.csv"]]
)
def test_the_clients_find_the_service_in_the_environment(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After FEEDBACK_MONITOR_PORT=5001 make run, the report need not be told the port."""
    assert cli._parser().parse_args(command).url == "http://127.0.0.1:5000"
    monkeypatch.setenv(PREFIX + "URL", "http://127.0.0.1:5001")
    assert cli._parser().parse_args(command).url == "http://127.0.0.1:5001"
    assert cli._parser().parse_args([*command, "--url", "http://h:1"]).url == "http://h:1"
