"""The HTML format: one self-contained page (inline style and SVG charts, no script, nothing
fetched), from the template ``page.html`` next to this module."""

import functools
import importlib.resources
from html import escape
from string import Template

from feedback_monitor import __version__
from feedback_monitor.report import steps
from feedback_monitor.report.document import Report
from feedback_monitor.report.numbers import moment
from feedback_monitor.report.svg import accuracy_chart, volume_chart
from feedback_monitor.report.tables import Section, Table, sections, title

ACCURACY = (
    "Accuracy per {step}: the line, and its Wilson 95% interval as the band (a bar for a step "
    "alone); dashed red lines mark drift events, when they were found (by label arrival)."
)
VOLUME = "Labelled outcomes per {step}, by confusion cell."


@functools.cache
def template() -> Template:
    return Template(
        importlib.resources.files("feedback_monitor.report").joinpath("page.html").read_text()
    )


def render(report: Report) -> str:
    s = report.summary
    lead = f"{moment(s.start)} to {moment(s.end)}, {report.time} time"
    body = "\n".join(_section(section, report) for section in sections(report))
    return template().substitute(
        version=escape(__version__), title=escape(title(report)), lead=escape(lead), body=body
    )


def _section(section: Section, report: Report) -> str:
    parts = [
        f'<section id="{escape(section.key)}">',
        f"<h2>{escape(section.title)}</h2>",
        f"<p>{escape(section.text)}</p>",
    ]
    if section.key == "days" and (drawn := charts(report)):
        parts.append(drawn)
    if section.table is not None:
        parts.append(table(section.table))
    return "\n".join([*parts, "</section>"])


def charts(report: Report) -> str:
    """The accuracy and the volume of each step, when there are steps with feedback."""
    if not report.days:
        return ""
    s = report.summary
    window = (report.days, s.start, s.end, report.step)
    step = steps.name(report.step)
    return "\n".join(
        [
            figure(accuracy_chart(*window, report.drift.events), ACCURACY.format(step=step)),
            figure(volume_chart(*window), VOLUME.format(step=step)),
        ]
    )


def figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def table(table: Table) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in table.header)
    rows = [
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in table.rows
    ]
    # In a box that scrolls sideways: on a phone, a wide table does not widen the page.
    return "\n".join(
        [
            '<div class="scroll"><table>',
            f"<thead><tr>{head}</tr></thead>",
            "<tbody>",
            *rows,
            "</tbody>",
            "</table></div>",
        ]
    )
