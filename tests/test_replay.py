"""Replay's reading of CSV and JSON Lines: the column mapping, ids, and bad rows by line."""

import argparse
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from feedback_monitor import replay
from feedback_monitor.client import FeedbackClient
from feedback_monitor.records import Feedback, InvalidRecord, parse_feedback
from feedback_monitor.replay import BadRow, FileError, Progress, Row


def arguments(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    replay.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["replay", *argv])


def read(path: Path, *flags: str) -> list[Row | BadRow]:
    args = arguments(str(path), *flags)
    file_format = replay.detect_format(path, args.format)
    return list(replay.rows(path, file_format, replay.mapping(args)))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_columns_are_mapped_and_rows_without_an_id_get_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "history.csv",
        "pred,truth,key,p,when\n1,1,,0.9,1700000000\n0,1,k-2,,2024-01-02T03:04:05Z\n\n 0 ,0,,,\n",
    )
    flags: tuple[str, ...] = (
        "--prediction-column",
        "pred",
        "--actual-column",
        "truth",
        "--id-column",
        "key",
    )
    flags += ("--score-column", "p", "--timestamp-column", "when", "--model", "m", "--version", "2")
    assert read(path, *flags) == [
        Row(2, Feedback(1, 1, "m", "2", "replay:history.csv:2", 0.9, 1700000000.0)),
        Row(3, Feedback(0, 1, "m", "2", "k-2", None, 1704164645.0)),
        Row(5, Feedback(0, 0, "m", "2", "replay:history.csv:5")),
    ]


def test_csv_columns_of_the_same_name_need_no_flag(tmp_path: Path) -> None:
    path = write(tmp_path, "h.csv", "actual,model,prediction,version\n1,fraud,0,v1\n")
    assert read(path, "--id-prefix", "run-7") == [Row(2, Feedback(0, 1, "fraud", "v1", "run-7:2"))]


def test_bad_csv_rows_are_reported_by_the_line_they_start_on(tmp_path: Path) -> None:
    text = 'prediction,actual,model\n1,0,ok\n2,0,ok\n1,1,"two\nlines"\n1\n1,,ok\n,1,ok\n1,1,ok\n'
    assert read(write(tmp_path, "bad.csv", text)) == [
        Row(2, Feedback(1, 0, "ok", "", "replay:bad.csv:2")),
        BadRow(3, "Values must be 0 or 1"),
        BadRow(
            4,
            "Invalid model: 1 to 64 characters, each a letter, a digit or one of _ . : -,"
            " but not . or ..",
        ),
        BadRow(6, "1 fields where the header has 3"),
        BadRow(7, "Missing required fields"),
        BadRow(8, "Missing required fields"),  # no prediction and no id to join
        Row(9, Feedback(1, 1, "ok", "", "replay:bad.csv:9")),
    ]


def test_a_named_column_missing_from_the_header_stops_before_any_row(tmp_path: Path) -> None:
    path = write(tmp_path, "h.csv", "prediction,actual\n1,1\n")
    with pytest.raises(FileError, match="no column label"):
        read(path, "--actual-column", "label")
    with pytest.raises(FileError, match="no column actual"):
        read(write(tmp_path, "none.csv", "prediction\n1\n"))
    with pytest.raises(FileError, match="empty"):
        read(write(tmp_path, "empty.csv", ""))


def test_a_cell_past_the_csv_modules_limit_is_a_file_error_naming_its_line(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "big.csv", f"prediction,actual,id\n1,1,a\n1,1,{'x' * 200_000}\n")
    with pytest.raises(FileError, match=r"^line 3: not CSV"):
        read(path)
    path = write(tmp_path, "head.csv", f"prediction,actual,{'x' * 200_000}\n1,1,a\n")
    with pytest.raises(FileError, match=r"^line 1: not CSV"):
        read(path)


def test_json_lines_rows(tmp_path: Path) -> None:
    text = (
        '{"prediction": 1, "label": 0, "id": 17, "score": 0.25}\n\n'
        '{"prediction": "1", "label": 0}\n[1, 0]\n{"prediction": 1,\n'
        '{"label": 1, "id": "p-1", "ts": "2024-01-01T00:00:00+01:00"}\n'
    )
    path = write(tmp_path, "h.jsonl", text)
    first, *bad, last = read(path, "--actual-column", "label", "--timestamp-column", "ts")
    assert first == Row(1, Feedback(1, 0, "default", "", "17", 0.25))
    assert [(row.line, row.message[:25]) for row in bad if isinstance(row, BadRow)] == [
        (3, "Values must be 0 or 1"),
        (4, "not a JSON object"),
        (5, "not JSON: Input data was "),
    ]
    assert last == Row(6, Feedback(None, 1, "default", "", "p-1", None, 1704063600.0))


@pytest.mark.parametrize(
    "line",
    [
        '{"prediction": 1, "actual": 0, "score": NaN}',
        '{"prediction": 1, "actual": 0, "score": -Infinity}',
        '{"prediction": 1, "actual": 1, "score": 1e400, "id": "inf1"}',  # infinity, to Python
        '{"prediction": 1, "actual": 1, "timestamp": -1e400}',
        '{"prediction": 1, "actual": 1, "id": "\\ud800x"}',  # a lone surrogate: no UTF-8 has it
    ],
)
def test_json_lines_the_api_refuses_are_bad_rows(tmp_path: Path, line: str) -> None:
    """Python's json reads them; sent on, a score or time would become null, and a lone
    surrogate a UnicodeEncodeError: each is a bad row, by line, and nothing is sent."""
    with pytest.raises(InvalidRecord):  # the oracle: the server refuses the line as it is
        parse_feedback(line.encode())
    path = write(tmp_path, "h.jsonl", '{"prediction": 0, "actual": 0}\n' + line + "\n")
    first, second = read(path)
    assert isinstance(first, Row)
    assert isinstance(second, BadRow)
    assert second.line == 2
    assert second.message.startswith("not JSON: ")
    out, err = io.StringIO(), io.StringIO()
    # Nothing listens on port 9: a send would fail, not pass unnoticed.
    assert replay.run(arguments(str(path), "--url", "http://127.0.0.1:9"), out, err) == 1
    assert err.getvalue().splitlines() == [
        f"h.jsonl:2: {second.message}",
        "replay: 1 of 2 rows are invalid; nothing was sent",
    ]


@pytest.mark.parametrize("name", ["h.csv", "h.jsonl"])
def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path, name: str) -> None:
    text = "prediction,actual\n1,0\n" if name.endswith("csv") else '{"prediction":1,"actual":0}\n'
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())  # as Excel writes UTF-8
    (row,) = read(path)
    assert isinstance(row, Row)
    assert (row.feedback.prediction, row.feedback.actual) == (1, 0)


def test_the_format_comes_from_the_extension_or_the_flag(tmp_path: Path) -> None:
    assert replay.detect_format(Path("a.CSV"), None) == "csv"
    assert replay.detect_format(Path("a.ndjson"), None) == "jsonl"
    assert replay.detect_format(Path("a.txt"), "csv") == "csv"
    with pytest.raises(FileError, match="--format"):
        replay.detect_format(Path("a.txt"), None)


def test_a_long_file_name_gives_ids_that_fit() -> None:
    assert replay.row_id("replay:a.csv", 12) == "replay:a.csv:12"
    long = replay.row_id("replay:" + "x" * 200, 12)
    assert len(long) <= 128
    assert long == replay.row_id("replay:" + "x" * 200, 12)
    assert long.endswith(":12")


def test_bad_rows_stop_the_run_before_anything_is_sent(tmp_path: Path) -> None:
    path = write(tmp_path, "h.csv", "prediction,actual\n" + "1,1\n" * 30 + "1,2\n" * 25)
    out, err = io.StringIO(), io.StringIO()
    # Nothing listens on port 9: a send would fail, not pass unnoticed.
    assert replay.run(arguments(str(path), "--url", "http://127.0.0.1:9"), out, err) == 1
    lines = err.getvalue().splitlines()
    assert lines[0] == "h.csv:32: Values must be 0 or 1"
    assert lines[20:] == [
        "... and 5 more bad rows",
        "replay: 25 of 55 rows are invalid; nothing was sent",
    ]
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--url", "http://[::1"), "--url"),
        (("--url", "127.0.0.1:5000"), "--url"),  # no scheme: not a server that is down
        (("--token", "t\u00f8ken", "--url", "http://127.0.0.1:9"), "--token"),
    ],
)
def test_a_url_or_token_that_cannot_be_used_is_one_line(
    tmp_path: Path, flags: tuple[str, ...], named: str
) -> None:
    path = write(tmp_path, "h.csv", "prediction,actual\n1,1\n")
    out, err = io.StringIO(), io.StringIO()
    assert replay.run(arguments(str(path), *flags), out, err) == 2
    assert err.getvalue().startswith(f"replay: {named}: ")
    assert err.getvalue().count("\n") == 1
    assert out.getvalue() == ""


def test_a_file_changed_mid_run_keeps_the_count_of_what_was_sent() -> None:
    def accept(request: httpx.Request) -> httpx.Response:
        accepted = len(json.loads(request.content)["items"])
        return httpx.Response(200, json={"success": True, "accepted": accepted, "duplicates": 0})

    rows: list[Row | BadRow] = [Row(n, Feedback(1, 1, id=f"r-{n}")) for n in range(1, 5)]
    rows.append(BadRow(5, "Values must be 0 or 1"))  # appended since it was validated
    with FeedbackClient(transport=httpx.MockTransport(accept)) as client:
        summary = replay.send(client, iter(rows), 2, Progress(5, io.StringIO(), enabled=False))
    assert (summary.sent, summary.accepted) == (4, 4)
    assert summary.error is not None
    assert "line 5" in summary.error
    assert "the file changed" in summary.error


def test_a_batch_too_large_for_the_server_says_what_to_change() -> None:
    too_large = httpx.Response(413, json={"error": "Body larger than 4096 bytes"})
    rows: list[Row | BadRow] = [Row(n, Feedback(1, 1, id=f"r-{n}")) for n in range(1, 5)]
    with FeedbackClient(transport=httpx.MockTransport(lambda request: too_large)) as client:
        summary = replay.send(client, iter(rows), 4, Progress(4, io.StringIO(), enabled=False))
    assert summary.error == (
        "refused by the server (413): Body larger than 4096 bytes (a smaller --batch-size fits)"
    )


def test_a_proxys_page_stops_the_run_as_not_counted() -> None:
    login = httpx.Response(200, html="<html>login</html>")
    rows: list[Row | BadRow] = [Row(n, Feedback(1, 1, id=f"r-{n}")) for n in range(1, 5)]
    with FeedbackClient(transport=httpx.MockTransport(lambda request: login)) as client:
        summary = replay.send(client, iter(rows), 2, Progress(4, io.StringIO(), enabled=False))
    assert (summary.sent, summary.accepted) == (0, 0)
    assert summary.error is not None
    assert summary.error.startswith("not the service's answer: 200 ")


def test_an_interrupt_while_checking_the_file_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object) -> tuple[int, int]:
        raise KeyboardInterrupt

    monkeypatch.setattr(replay, "validate", interrupted)
    path = write(tmp_path, "h.csv", "prediction,actual\n1,1\n")
    out, err = io.StringIO(), io.StringIO()
    assert replay.run(arguments(str(path), "--url", "http://127.0.0.1:9"), out, err) == 130
    assert err.getvalue() == "replay: interrupted while checking the file; nothing was sent\n"


def test_a_dry_run_validates_only(tmp_path: Path) -> None:
    path = write(tmp_path, "h.csv", "prediction,actual\n1,1\n0,1\n")
    out, err = io.StringIO(), io.StringIO()
    assert (
        replay.run(arguments(str(path), "--dry-run", "--url", "http://127.0.0.1:9"), out, err) == 0
    )
    assert (out.getvalue(), err.getvalue()) == ("h.csv: 2 rows valid; nothing sent (dry run)\n", "")


def test_the_progress_line() -> None:
    stream = io.StringIO()
    progress = Progress(200, stream, enabled=True)
    progress.update(200)
    progress.close()
    assert stream.getvalue().startswith("\r[" + "#" * 30 + "] 200/200 rows 100% ")
    assert stream.getvalue().endswith(" rows/s\n")
    assert Progress(10, stream, enabled=False).line(0.0).startswith("[" + " " * 30 + "] 0/10")


def repeats_then_interrupt(batches: int) -> Callable[[httpx.Request], httpx.Response]:
    """A server that had counted every row before; Ctrl-C while the batch after ``batches``
    is sent."""
    answered = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal answered
        if answered == batches:
            raise KeyboardInterrupt
        answered += 1
        items = len(json.loads(request.content)["items"])
        return httpx.Response(200, json={"success": True, "accepted": 0, "duplicates": items})

    return answer


@pytest.mark.parametrize(("batches", "hinted"), [(2, True), (1, False)])
def test_the_hint_to_count_again_is_only_for_a_whole_file_of_repeats(
    tmp_path: Path, batches: int, hinted: bool
) -> None:
    """A resumed run interrupted while it resends the rows counted before it: the rows it did
    not reach may be uncounted, and another --id-prefix would count the first ones twice."""
    path = write(tmp_path, "h.csv", "prediction,actual\n" + "1,1\n" * 4)  # two batches of 2
    out, err = io.StringIO(), io.StringIO()
    transport = httpx.MockTransport(repeats_then_interrupt(batches))
    with FeedbackClient(transport=transport) as client:
        where = replay.mapping(arguments(str(path)))
        status = replay._replay(client, 2, path, replay.rows(path, "csv", where), 4, out, err)
    assert status == (0 if hinted else 1)
    assert ("--id-prefix" in err.getvalue()) is hinted
    assert (replay.ALL_DUPLICATES in err.getvalue()) is hinted


def test_a_server_down_is_retried_for_about_a_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the flag's help says a restarting server is waited for; the waits are recorded, not
    slept."""
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    path = write(tmp_path, "h.csv", "prediction,actual\n1,1\n")
    out, err = io.StringIO(), io.StringIO()
    # Nothing listens on port 9: each attempt is refused at once.
    assert replay.run(arguments(str(path), "--url", "http://127.0.0.1:9"), out, err) == 1
    assert "the server did not answer" in err.getvalue()
    assert 40 <= sum(waits) <= 90
