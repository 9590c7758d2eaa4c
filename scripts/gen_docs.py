"""Writes the generated references: docs/configuration.md from the settings model and docs/api.md
from the OpenAPI document. ``python -m scripts.gen_docs`` rewrites them; ``--check`` exits 1
when one is out of date (tests/test_docs.py runs the same comparison)."""

import argparse
import inspect
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from feedback_monitor.openapi import document
from feedback_monitor.settings import SECRETS, Settings, shown_defaults

DOCS = Path(__file__).resolve().parents[1] / "docs"
ENV_PREFIX = "FEEDBACK_MONITOR_"
_CONSTRAINTS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"), ("min_length", "length ≥"))
_SCHEMA_BOUNDS = (
    ("minimum", "≥"), ("maximum", "≤"), ("minLength", "length ≥"), ("maxLength", "length ≤"),
)  # fmt: skip


def row(*cells: str) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    return [row(*header), row(*("---" for _ in header)), *(row(*cells) for cells in rows)]


def prose(text: str) -> str:
    """A docstring as Markdown: indentation removed, reStructuredText literals as code."""
    return inspect.cleandoc(text).replace("``", "`")


def code(value: object) -> str:
    return f"`{value}`"


# configuration.md


def _value(value: object) -> str:
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g} s"
    return str(value.value if isinstance(value, Enum) else value)


def allowed(info: FieldInfo) -> str:
    """The values a setting accepts beyond its type: enum members and numeric bounds."""
    if isinstance(info.annotation, type) and issubclass(info.annotation, Enum):
        return ", ".join(code(member.value) for member in info.annotation)
    return ", ".join(
        f"{symbol} {_value(getattr(item, attribute))}"
        for item in info.metadata
        for attribute, symbol in _CONSTRAINTS
        if hasattr(item, attribute)
    )


def _setting_row(name: str, info: FieldInfo, default: str | None) -> list[str]:
    description = info.description or ""
    if name in SECRETS:
        description += " Secret: never shown by `/api/v1/config`."
    return [
        code(name),
        code(ENV_PREFIX + name.upper()),
        code("--" + name.replace("_", "-")),
        "unset" if default is None else code(default) if default else "empty",
        allowed(info),
        description,
    ]


def configuration() -> str:
    defaults = shown_defaults()
    rows = (
        _setting_row(name, info, defaults[name]) for name, info in Settings.model_fields.items()
    )
    header = ("setting", "environment variable", "flag of `serve`", "default", "accepts", "meaning")
    return "\n".join([
        "# Configuration reference",
        "",
        "<!-- Generated from src/feedback_monitor/settings.py by `python -m scripts.gen_docs`;"
        " do not edit. -->",
        "",
        "Every setting of `feedback-monitor serve` is a flag and an environment variable. A flag"
        " wins over the environment, which wins over the default. An invalid value prints one line"
        " naming the setting and exits 2. Durations are seconds; `prediction_ttl` also takes a"
        " number with a unit (`30d`) or ISO 8601 (`P30D`, `PT1H`), and `retention` a number with"
        " a unit (`48h`, `90d`).",
        "`GET /api/v1/config` answers the settings in force, secrets left out.",
        "",
        *table(header, rows),
        "",
    ])  # fmt: skip


# api.md


def schema_name(ref: str) -> str:
    return ref.rsplit("/", 1)[1]


def link(name: str) -> str:
    return f"[{name}](#{slug(name)})"


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def bounds(node: dict[str, Any]) -> str:
    found = [f"{symbol} {node[key]}" for key, symbol in _SCHEMA_BOUNDS if key in node]
    if "format" in node:
        found.append(node["format"])
    if "pattern" in node:
        found.append(f"matching `{node['pattern']}`")
    return f" ({', '.join(found)})" if found else ""


def type_of(node: dict[str, Any]) -> str:
    """A JSON schema as a short Markdown phrase."""
    if "$ref" in node:
        return link(schema_name(node["$ref"]))
    if "anyOf" in node:
        return " or ".join(type_of(branch) for branch in node["anyOf"])
    if "enum" in node:
        return " or ".join(code(json.dumps(value)) for value in node["enum"])
    if node.get("type") == "array":
        return "array of " + type_of(node.get("items", {}))
    return str(node.get("type", "any")) + bounds(node)


def describe(node: dict[str, Any]) -> str:
    branches = [node, *node.get("anyOf", [])]
    return "; ".join(prose(b["description"]) for b in branches if "description" in b)


def schema_section(name: str, schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    rows = (
        [
            code(field),
            type_of(node),
            "yes" if field in required else "no",
            code(json.dumps(node["default"])) if "default" in node else "",
            describe(node),
        ]
        for field, node in schema.get("properties", {}).items()
    )
    intro = [prose(schema["description"]), ""] if "description" in schema else []
    header = ("field", "type", "required", "default", "meaning")
    return [f"### {name}", "", *intro, *table(header, rows), ""]


def _body(content: dict[str, Any]) -> str:
    return ", ".join(
        f"{type_of(media['schema'])} (`{media_type}`)" for media_type, media in content.items()
    )


def operation_section(method: str, path: str, operation: dict[str, Any]) -> list[str]:
    lines = [f"### {method.upper()} {path}", "", operation["summary"] + ".", ""]
    if "description" in operation:
        lines += [operation["description"], ""]
    parameters = [
        [code(p["name"]), p["in"], "yes" if p["required"] else "no", type_of(p["schema"]),
         p["description"]]
        for p in operation.get("parameters", [])
    ]  # fmt: skip
    if parameters:
        lines += [*table(("parameter", "in", "required", "type", "meaning"), parameters), ""]
    if "requestBody" in operation:
        lines += ["Body: " + _body(operation["requestBody"]["content"]), ""]
    responses = (
        [code(status), answer["description"], _body(answer.get("content", {}))]
        for status, answer in operation["responses"].items()
    )
    return [*lines, *table(("status", "meaning", "body"), responses), ""]


def api() -> str:
    spec = document()
    operations = [
        (method, path, operation)
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]
    index = (
        [link(f"{method.upper()} {path}"), operation["summary"]]
        for method, path, operation in operations
    )
    schemas = spec["components"]["schemas"]
    return "\n".join([
        "# API reference",
        "",
        "<!-- Generated from feedback_monitor.openapi.document() by `python -m scripts.gen_docs`;"
        " do not edit. -->",
        "",
        f"{spec['info']['title']} {spec['info']['version']}, OpenAPI {spec['openapi']}: the"
        " service serves this same document at `GET /openapi.json`. Every error is JSON,"
        ' `{"error": "..."}` (a batch adds the `index` of the item at fault).',
        "",
        "## Endpoints",
        "",
        *table(("endpoint", "summary"), index),
        "",
        *(line for op in operations for line in operation_section(*op)),
        "## Schemas",
        "",
        *(line for name, schema in schemas.items() for line in schema_section(name, schema)),
    ])  # fmt: skip


GENERATED: dict[str, Callable[[], str]] = {"configuration.md": configuration, "api.md": api}


def stale() -> list[str]:
    """The generated documents whose file differs from what the code generates now."""
    return [
        name
        for name, generate in GENERATED.items()
        if not (DOCS / name).exists() or (DOCS / name).read_text() != generate()
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.gen_docs", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a document is stale")
    if parser.parse_args(argv).check:
        names = stale()
        for name in names:
            sys.stderr.write(f"docs/{name} is out of date: run python -m scripts.gen_docs\n")
        return 1 if names else 0
    for name, generate in GENERATED.items():
        (DOCS / name).write_text(generate())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
