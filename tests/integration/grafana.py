"""The Grafana files under deploy/grafana as the tests read them: the dashboard's queries with its
variables filled in the way Grafana fills them, and the alert thresholds its panels should draw."""

import json
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import yaml  # type: ignore[import-untyped]

from tests.integration.prometheus import DEPLOY

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "feedback-monitor.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "feedback-monitor.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "feedback-monitor.yml"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
"""What every panel, query and query variable names as its data source: the variable."""

_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"label_values\((?:(.+),\s*)?(\w+)\)")
_THRESHOLD = re.compile(
    r"^(?:and )?([\w:]+:(?:ratio|wilson_upper)_\w+) [<>] ([0-9.]+)$", re.MULTILINE
)
_RATE_OF = re.compile(r"\b(?:rate|irate|increase)\(\s*([A-Za-z_:][\w:]*)")


class Query(NamedTuple):
    """One PromQL query of the dashboard: where it is, and whether Grafana runs it instant."""

    where: str
    expr: str
    instant: bool


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def queries(dashboard: Mapping[str, Any]) -> Iterator[Query]:
    """Every panel target and every annotation query."""
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            instant = target.get("instant", False) and not target.get("range", False)
            yield Query(f"{panel['title']} {target['refId']}", target["expr"], instant)
    for annotation in dashboard["annotations"]["list"]:
        yield Query(f"annotation {annotation['name']}", annotation["expr"], False)


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with each ``$name`` and ``${name}`` replaced; an unknown one is a KeyError."""
    return _VARIABLE.sub(lambda match: values[match.group(1) or match.group(2)], expr)


def label_values(query: str, values: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """A ``label_values([selector,] label)`` variable query as a Prometheus API path and
    parameters."""
    match = _LABEL_VALUES.fullmatch(query)
    assert match is not None, query
    selector, label = match.groups()
    params = {"match[]": substitute(selector, values)} if selector else {}
    return f"/api/v1/label/{label}/values", params


def rated(expr: str) -> list[str]:
    """The metrics ``expr`` takes a ``rate()``, ``irate()`` or ``increase()`` of."""
    return _RATE_OF.findall(expr)


def finite_values(result: list[dict[str, Any]]) -> list[float]:
    """The finite sample values of an instant or range query's result."""
    samples = [s["value"] for s in result if "value" in s]
    samples += [pair for s in result for pair in s.get("values", [])]
    return [float(value) for _, value in samples if math.isfinite(float(value))]


def alert_thresholds(rules: Mapping[str, Any]) -> dict[str, set[float]]:
    """Each recorded ratio an alert compares with a fixed number, and those numbers."""
    alerts = [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    found: dict[str, set[float]] = {}
    for alert in alerts:
        for record, value in _THRESHOLD.findall(alert["expr"]):
            found.setdefault(record, set()).add(float(value))
    return found


def drawn_thresholds(panel: Mapping[str, Any]) -> set[float]:
    """The threshold values a panel draws on its graph (none if its thresholds style is off)."""
    defaults = panel["fieldConfig"]["defaults"]
    if defaults.get("custom", {}).get("thresholdsStyle", {}).get("mode", "off") == "off":
        return set()
    return {step["value"] for step in defaults["thresholds"]["steps"] if step["value"] is not None}
