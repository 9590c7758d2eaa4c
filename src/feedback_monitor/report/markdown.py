"""The Markdown format: the report's sections as headings, sentences and pipe tables.

>>> cell("a|b_c")
'a\\\\|b\\\\_c'
"""

import re

from feedback_monitor.report.document import Report
from feedback_monitor.report.tables import Section, Table, sections, title

_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|#])")


def cell(text: str) -> str:
    """Text that Markdown shows as is, on one line."""
    return _SPECIAL.sub(r"\\\1", " ".join(text.split()))


def render(report: Report) -> str:
    parts = [f"# {cell(title(report))}"]
    for section in sections(report):
        parts.append(_section(section))
    return "\n\n".join(parts) + "\n"


def _section(section: Section) -> str:
    lines = [f"## {cell(section.title)}", "", cell(section.text)]
    if section.table is not None:
        lines += ["", _table(section.table)]
    return "\n".join(lines)


def _table(table: Table) -> str:
    def row(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(cell(c) for c in cells) + " |"

    rule = "|" + "---|" * len(table.header)
    return "\n".join([row(table.header), rule, *(row(r) for r in table.rows)])
