"""``feedback-monitor report``: an audit report of one series over a period, read from a running
service's JSON API, as one self-contained HTML page, Markdown or JSON."""

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from feedback_monitor.auth import TOKEN_VARIABLE, URL_VARIABLE
from feedback_monitor.client import DEFAULT_URL
from feedback_monitor.report import markdown, page
from feedback_monitor.report.dates import period
from feedback_monitor.report.document import Report, to_json
from feedback_monitor.report.errors import BadFlag, ReportError
from feedback_monitor.report.gather import client, gather

__all__ = ["FORMATS", "ReportError", "add_parser", "run"]

FORMATS: dict[str, Callable[[Report], str]] = {
    "html": page.render,
    "md": markdown.render,
    "json": to_json,
}
EXTENSIONS = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md", ".json": "json"}


def add_parser(subparsers: "argparse._SubParsersAction[Any]") -> argparse.ArgumentParser:
    """The ``report`` subcommand and its flags."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="write an audit report of a series",
        description="An audit report of one series over a period, read from a running "
        "service's JSON API: one self-contained HTML page, Markdown or JSON.",
        epilog="A service that protects its reads takes a bearer token with the read scope "
        "from FEEDBACK_MONITOR_TOKEN.",
    )
    parser.add_argument("--model", required=True, help="The model reported on.")
    parser.add_argument("--version", default="", help="Its version (default: none).")
    parser.add_argument(
        "--since",
        help="Start: an RFC 3339 date (from its midnight UTC) or date-time "
        "(default: the UTC day 30 days before --until).",
    )
    parser.add_argument(
        "--until", help="End: an RFC 3339 date (to its end, UTC) or date-time (default: now)."
    )
    parser.add_argument("--out", required=True, type=Path, help="The file written; - for stdout.")
    parser.add_argument(
        "--format",
        choices=sorted(FORMATS),
        help="Default: from --out's extension (.html, .md, .json); html for -.",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_VARIABLE, DEFAULT_URL),
        help=f"The service (default ${URL_VARIABLE}, else {DEFAULT_URL}).",
    )
    parser.add_argument(
        "--time",
        choices=("arrival", "prediction"),
        default="arrival",
        help="Place outcomes by label arrival (default) or by prediction time.",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Write the report; 0, or one line on stderr and 2 for a bad flag, 1 for another failure.
    A service that protects its reads takes the bearer token in ``FEEDBACK_MONITOR_TOKEN``."""
    try:
        kind = output_format(args.out, args.format)
        start, end = period(args.since, args.until, time.time())
        with client(args.url, os.environ.get(TOKEN_VARIABLE)) as http:
            report = gather(http, args.model, args.version, args.time, start, end)
        write(args.out, FORMATS[kind](report))
    except ReportError as error:
        sys.stderr.write(f"feedback-monitor report: error: {error.message}\n")
        return error.status
    return 0


def output_format(out: Path, chosen: str | None) -> str:
    if chosen is not None:
        return chosen
    if str(out) == "-":
        return "html"
    try:
        return EXTENSIONS[out.suffix.lower()]
    except KeyError:
        raise BadFlag(f"--out {str(out)!r}: give --format (html, md or json)") from None


def write(out: Path, text: str) -> None:
    if str(out) == "-":
        sys.stdout.write(text)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as error:
        raise ReportError(f"cannot write {out}: {error.strerror or error}") from None
