"""``feedback-monitor replay FILE``: send a history of feedback through ``POST /feedback/batch``.

The file is CSV (with a header line) or JSON Lines (one object a line), told by its extension
(``.csv``; ``.jsonl``, ``.ndjson``) or by ``--format``. Each field of a feedback is read from the
column (CSV) or key (JSON Lines) of its name unless a flag names another; ``--model`` and
``--version`` give one value for every row instead. CSV cells are text: ``prediction`` and
``actual`` must read 0 or 1, ``score`` and ``timestamp`` numbers (a timestamp may also be RFC
3339 text); an empty cell is an absent field. JSON Lines values are taken as the API takes them.

Every row is validated first, by the server's own rules; if any is bad, each is reported with its
line number, nothing is sent, and the exit status is 1. ``--dry-run`` stops there.

Replays are resumable: every row is sent with an id, its own (``--id-column``) or, for a row that
has none, ``replay:<file name>:<line>`` (``--id-prefix`` replaces ``replay:<file name>``). The
server counts an id once for as long as it remembers ids (``prediction_ttl``, 30 days by
default), so running a replay again, after an interruption or a failure, counts nothing twice:
rows already counted come back as duplicates. Two different files with the same name need
different ``--id-prefix`` values. A batch the server refuses (a conflict with an id counted
before, an unknown prediction id) stops the replay with that row's line number; the batches
before it stay counted.
"""

import argparse
import csv
import hashlib
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

import httpx
import msgspec

from feedback_monitor.auth import TOKEN_VARIABLE, URL_VARIABLE
from feedback_monitor.client import (
    DEFAULT_URL,
    BatchResult,
    FeedbackClient,
    Refused,
    Retry,
    UnexpectedAnswer,
    Unreachable,
)
from feedback_monitor.records import Feedback, InvalidRecord, parse_feedback

FIELDS = ("prediction", "actual", "id", "model", "version", "score", "timestamp")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
MAX_REPORTED = 20  # bad rows listed; the rest are counted
MAX_ID = 128
# A restarting server is waited for rather than given up on at once: 21 waits of up to 0.1,
# 0.2, ... 3.2, then 5 s, each between half and all of that, are 41 to 81 s, about a minute.
PATIENCE = Retry(attempts=22, base=0.1, cap=5.0)


class Row(NamedTuple):
    """A valid row, as the feedback to send."""

    line: int
    feedback: Feedback


class BadRow(NamedTuple):
    line: int
    message: str


class FileError(ValueError):
    """A file that cannot be read as asked (format, header, encoding)."""


class Mapping(NamedTuple):
    """Where each field comes from: a column (or key) name, or a value for every row."""

    columns: dict[str, str]
    constants: dict[str, str]
    id_prefix: str
    required: frozenset[str]  # CSV columns that must be in the header: actual's, and any named


def mapping(args: argparse.Namespace) -> Mapping:
    columns = {field: getattr(args, f"{field}_column") or field for field in FIELDS}
    constants = {f: getattr(args, f) for f in ("model", "version") if getattr(args, f) is not None}
    for field in constants:
        del columns[field]
    named = {columns[f] for f in columns if getattr(args, f"{f}_column") is not None}
    required = frozenset({*named, columns["actual"]})
    return Mapping(columns, constants, args.id_prefix or f"replay:{Path(args.file).name}", required)


def row_id(prefix: str, line: int) -> str:
    """The id of a row that has none; a prefix too long for ids is shortened to a hash."""
    suffix = f":{line}"
    if len(prefix) + len(suffix) > MAX_ID:
        prefix = "replay:" + hashlib.sha256(prefix.encode()).hexdigest()[:32]
    return prefix + suffix


def _cell(field: str, text: str) -> object:
    """A CSV cell as the JSON value the API expects; what does not convert stays text, for
    the validation to name."""
    text = text.strip()
    if field in ("prediction", "actual") and text in ("0", "1"):
        return int(text)
    if field in ("score", "timestamp"):
        try:
            number = float(text)
        except ValueError:
            return text
        return number if math.isfinite(number) else text
    return text


def body(raw: dict[str, object], where: Mapping, line: int, csv_cells: bool) -> dict[str, object]:
    """The request body of one row: its mapped fields, then an id if it has none."""
    fields: dict[str, object] = dict(where.constants)
    for field, column in where.columns.items():
        value = raw.get(column)
        if value is None or value == "":
            continue
        fields[field] = _cell(field, value) if csv_cells and isinstance(value, str) else value
    if isinstance(fields.get("id"), int) and not isinstance(fields["id"], bool):
        fields["id"] = str(fields["id"])
    if "id" not in fields and "prediction" in fields:
        fields["id"] = row_id(where.id_prefix, line)
    return fields


def check(line: int, fields: dict[str, object]) -> Row | BadRow:
    """The row as a feedback, validated as the server validates it, or why it is not one."""
    try:
        return Row(line, parse_feedback(msgspec.json.encode(fields)))
    except InvalidRecord as error:
        return BadRow(line, error.message)


def csv_rows(lines: IO[str], where: Mapping) -> Iterator[Row | BadRow]:
    reader = csv.reader(lines)
    line = 1
    try:
        header = next(reader, None)
        if header is None:
            raise FileError("the CSV file is empty: it needs a header line")
        if missing := where.required - set(header):
            raise FileError(f"no column {', '.join(sorted(missing))} in the header")
        line = reader.line_num + 1
        for cells in reader:
            if cells:
                yield _csv_row(line, header, cells, where)
            line = reader.line_num + 1
    except csv.Error as error:  # a cell past the csv module's size limit, say
        raise FileError(f"line {line}: not CSV as this reads it: {error}") from None


def _csv_row(line: int, header: list[str], cells: list[str], where: Mapping) -> Row | BadRow:
    if len(cells) != len(header):
        return BadRow(line, f"{len(cells)} fields where the header has {len(header)}")
    return check(line, body(dict(zip(header, cells, strict=True)), where, line, csv_cells=True))


ALL_DUPLICATES = (
    "replay: every row sent was counted before, under its id; the ids do not depend on --model"
    " or --version (give another --id-prefix to count the rows again)\n"
)


def jsonl_rows(lines: IO[str], where: Mapping) -> Iterator[Row | BadRow]:
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            # As the server reads JSON: Python's json takes NaN, 1e400 (infinity, which would be
            # sent on as null) and lone surrogates (which no UTF-8 request can carry).
            raw = msgspec.json.decode(text)
        except msgspec.DecodeError as error:
            # "JSON" said once is enough, and a path of $[...] names no key.
            detail = str(error).removeprefix("JSON is malformed: ").removesuffix(" - at `$[...]`")
            yield BadRow(line, f"not JSON: {detail}")
            continue
        except RecursionError:
            yield BadRow(line, "not JSON: nested too deeply")
            continue
        if not isinstance(raw, dict):
            yield BadRow(line, "not a JSON object")
            continue
        yield check(line, body(raw, where, line, csv_cells=False))


def rows(path: Path, file_format: str, where: Mapping) -> Iterator[Row | BadRow]:
    """Every row of the file, valid or not, in order."""
    read = csv_rows if file_format == "csv" else jsonl_rows
    with open(path, encoding="utf-8-sig", newline="") as lines:  # -sig: a BOM, as Excel writes
        try:
            yield from read(lines, where)
        except UnicodeDecodeError as error:
            raise FileError(f"not UTF-8 text: {error}") from None


def detect_format(path: Path, given: str | None) -> str:
    if given is not None:
        return given
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise FileError(f"cannot tell the format of {path.name}: give --format") from None


class Progress:
    """A one-line progress bar, redrawn in place at most ten times a second."""

    def __init__(self, total: int, stream: IO[str], enabled: bool) -> None:
        self.total = total
        self.stream = stream
        self.enabled = enabled
        self.done = 0
        self.start = self.drawn = time.monotonic()

    def update(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.enabled and (now - self.drawn >= 0.1 or self.done >= self.total):
            self.drawn = now
            self.stream.write("\r" + self.line(now))
            self.stream.flush()

    def line(self, now: float) -> str:
        share = self.done / self.total if self.total else 1.0
        bar = "#" * round(share * 30)
        rate = self.done / max(now - self.start, 1e-9)
        return f"[{bar:<30}] {self.done:,}/{self.total:,} rows {share:4.0%} {rate:,.0f} rows/s"

    def close(self) -> None:
        if self.enabled and self.done:
            self.stream.write("\n")


class Summary(NamedTuple):
    sent: int
    accepted: int
    duplicates: int
    error: str | None
    seconds: float

    def text(self, name: str, rows: int) -> str:
        rate = self.sent / max(self.seconds, 1e-9)
        return (
            f"{name}: {rows:,} rows: {self.sent:,} sent ({self.accepted:,} counted, "
            f"{self.duplicates:,} duplicates), {rows - self.sent:,} not sent; "
            f"{self.seconds:.1f} s, {rate:,.0f} rows/s"
        )


def batches(valid: Iterator[Row | BadRow], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in valid:
        if isinstance(row, BadRow):  # the file changed since it was validated
            raise FileError(f"line {row.line}: {row.message} (the file changed)")
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def send(
    client: FeedbackClient, valid: Iterator[Row | BadRow], size: int, bar: Progress
) -> Summary:
    """Every row, a batch at a time; stops at the first batch the server refuses."""
    start = time.monotonic()
    sent = accepted = duplicates = 0
    error = None
    try:
        for batch in batches(valid, size):
            result = _send_batch(client, batch)
            sent, accepted = sent + len(batch), accepted + result.accepted
            duplicates += result.duplicates
            bar.update(len(batch))
    except (_Stopped, FileError) as stopped:  # what was sent before still counts
        error = str(stopped)
    except KeyboardInterrupt:
        error = "interrupted: run it again to send the rest (what was sent counts once)"
    return Summary(sent, accepted, duplicates, error, time.monotonic() - start)


class _Stopped(Exception):
    """Why a replay stopped."""


def _send_batch(client: FeedbackClient, batch: list[Row]) -> BatchResult:
    try:
        return client.send_feedback_batch([row.feedback for row in batch])
    except Refused as refused:
        at = f"line {batch[refused.index].line}: " if refused.index is not None else ""
        hint = " (a smaller --batch-size fits)" if refused.status == 413 else ""
        message = f"{at}refused by the server ({refused.status}): {refused.message}{hint}"
        raise _Stopped(message) from None
    except Unreachable as error:
        raise _Stopped(f"the server did not answer: {error}") from None
    except UnexpectedAnswer as error:  # a proxy's page, say: the batch may not be counted
        raise _Stopped(f"not the service's answer: {error}") from None


def validate(all_rows: Iterator[Row | BadRow], out: IO[str], name: str) -> tuple[int, int]:
    """Count the rows and report the bad ones (the first ``MAX_REPORTED``); (rows, bad)."""
    count = bad = 0
    for row in all_rows:
        count += 1
        if isinstance(row, BadRow):
            bad += 1
            if bad <= MAX_REPORTED:
                out.write(f"{name}:{row.line}: {row.message}\n")
    if bad > MAX_REPORTED:
        out.write(f"... and {bad - MAX_REPORTED:,} more bad rows\n")
    return count, bad


def add_parser(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """The ``replay`` subcommand and its flags."""
    parser = subparsers.add_parser(
        "replay",
        help="send a CSV or JSON Lines history of feedback",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, help="the CSV or JSON Lines file")
    parser.add_argument("--format", choices=("csv", "jsonl"), help="instead of the extension")
    for field in FIELDS:
        parser.add_argument(
            f"--{field}-column", metavar="NAME", help=f"the column of {field} (default: {field})"
        )
    parser.add_argument("--model", help="the model of every row, instead of a column")
    parser.add_argument("--version", help="the version of every row, instead of a column")
    parser.add_argument("--id-prefix", help="ids of rows without one: PREFIX:<line>")
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_VARIABLE, DEFAULT_URL),
        help=f"the service (default: ${URL_VARIABLE}, else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_VARIABLE),
        help=f"a bearer token with the write scope (default: ${TOKEN_VARIABLE}, safer than a flag)",
    )
    parser.add_argument("--batch-size", type=_batch_size, default=1000, help="rows a request")
    parser.add_argument("--dry-run", action="store_true", help="validate only; send nothing")


def _batch_size(text: str) -> int:
    size = int(text)
    if not 1 <= size <= 10_000:
        raise argparse.ArgumentTypeError("from 1 to 10000")
    return size


def run(args: argparse.Namespace, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Validate the whole file, then send it unless ``--dry-run``; the exit status. The summary
    goes to ``out`` (stdout), the progress bar and every problem to ``err`` (stderr)."""
    out, err = out or sys.stdout, err or sys.stderr
    path: Path = args.file
    where = mapping(args)
    try:
        file_format = detect_format(path, args.format)
        count, bad = validate(rows(path, file_format, where), err, path.name)
    except (FileError, OSError) as error:
        err.write(f"replay: {error}\n")
        return 1
    except KeyboardInterrupt:
        err.write("replay: interrupted while checking the file; nothing was sent\n")
        return 130
    if bad:
        err.write(f"replay: {bad:,} of {count:,} rows are invalid; nothing was sent\n")
        return 1
    if args.dry_run:
        out.write(f"{path.name}: {count:,} rows valid; nothing sent (dry run)\n")
        return 0
    try:
        client = FeedbackClient(args.url, timeout=60.0, retry=PATIENCE, token=args.token)
    except ValueError as error:  # what the client refuses of these: a token no header carries
        err.write(f"replay: --token: {error}\n")
        return 2
    except httpx.InvalidURL as error:
        err.write(f"replay: --url: {error}\n")
        return 2
    with client:
        return _replay(
            client, args.batch_size, path, rows(path, file_format, where), count, out, err
        )


def _replay(
    client: FeedbackClient,
    batch_size: int,
    path: Path,
    valid: Iterator[Row | BadRow],
    count: int,
    out: IO[str],
    err: IO[str],
) -> int:
    bar = Progress(count, err, enabled=err.isatty())
    try:
        summary = send(client, valid, batch_size, bar)
    finally:
        bar.close()
    out.write(summary.text(path.name, count) + "\n")
    # Only for a whole file of repeats: a run stopped part way (say while resending the rows
    # of the run it resumes) tells nothing of the rows it did not reach.
    if summary.error is None and summary.sent and summary.duplicates == summary.sent:
        err.write(ALL_DUPLICATES)
    if summary.error is not None:
        err.write(f"replay: {summary.error}\n")
        return 1
    return 0
