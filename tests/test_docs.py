"""docs/: the generated references are current, the hand-written ones name every metric and
rule there is, and every relative link resolves."""

import re
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from scripts import gen_docs

from feedback_monitor.cli import main
from feedback_monitor.collector import FeedbackCollector
from feedback_monitor.settings import Settings
from feedback_monitor.telemetry import Telemetry

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "feedback-monitor.rules.yml"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def exported(metrics: list[Metric]) -> set[str]:
    """The names as exposed: a counter with its ``_total``."""
    return {m.name + "_total" if m.type == "counter" else m.name for m in metrics}


def metric_names() -> set[str]:
    registry = CollectorRegistry()
    Telemetry(registry)
    return exported([*FeedbackCollector(dict).collect(), *registry.collect()])


def headings(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {gen_docs.slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def links(path: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", path.read_text()))


@pytest.mark.parametrize("name", sorted(gen_docs.GENERATED))
def test_generated_reference_is_current(name: str) -> None:
    expected = gen_docs.GENERATED[name]()
    assert (DOCS / name).read_text() == expected, f"run python -m scripts.gen_docs ({name})"


def test_check_mode_names_stale_documents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(gen_docs, "DOCS", tmp_path)
    assert gen_docs.stale() == sorted(gen_docs.GENERATED, reverse=True)
    assert gen_docs.main(["--check"]) == 1
    assert "docs/api.md is out of date" in capsys.readouterr().err
    assert gen_docs.main([]) == 0
    assert gen_docs.stale() == []


def test_configuration_names_the_flags_the_cli_takes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    usage = capsys.readouterr().out
    document = (DOCS / "configuration.md").read_text()
    for name in Settings.model_fields:
        flag = "--" + name.replace("_", "-")
        assert flag in usage
        assert f"`{flag}`" in document
        assert f"`FEEDBACK_MONITOR_{name.upper()}`" in document


def test_metrics_reference_names_every_metric() -> None:
    names = metric_names()
    assert {"true_positives_total", "f1_score", "feedback_http_requests_total"} <= names
    document = (DOCS / "metrics.md").read_text()
    assert sorted(name for name in names if f"`{name}`" not in document) == []


def test_rules_reference_names_every_rule_and_alert() -> None:
    rules = [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]
    names = {rule.get("record") or rule["alert"] for rule in rules}
    assert len(names) == len(rules)
    document = (DOCS / "rules.md").read_text()
    assert sorted(name for name in names if f"`{name}`" not in document) == []


@pytest.mark.parametrize("path", [ROOT / "README.md", *sorted(DOCS.glob("*.md"))], ids=str)
def test_relative_links_resolve(path: Path) -> None:
    for link in links(path):
        if re.match(r"^[a-z]+:", link):
            continue  # http:, https:, mailto:
        target, _, anchor = link.partition("#")
        resolved = (path.parent / target).resolve() if target else path
        if not resolved.is_relative_to(ROOT):
            continue  # the workspace around the repository, not part of a clone
        assert resolved.exists(), f"{path.name}: {link}"
        if anchor:
            assert anchor in headings(resolved), f"{path.name}: {link}"


def test_readme_links_every_document() -> None:
    readme = links(ROOT / "README.md")
    assert sorted(f"docs/{doc.name}" for doc in DOCS.glob("*.md") if f"docs/{doc.name}" not in
                  readme) == []  # fmt: skip
