"""The Dockerfile and deploy/compose.yaml, checked as far as a machine without Docker allows:
files parse, images are pinned, every mounted file exists, and the Prometheus and Alertmanager
configurations pass promtool and amtool laid out as the containers see them."""

import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from feedback_monitor import __version__
from feedback_monitor.settings import Settings
from feedback_monitor.testing import ServiceProcess, free_port
from tests.integration.prometheus import require, run

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DIGEST = r"@sha256:[0-9a-f]{64}"
PINNED = re.compile(rf"^[a-z0-9./-]+:v?\d+\.\d+\.\d+[\w.-]*{DIGEST}$")
"""An image by exact version tag (never latest) and by digest."""
PYTHON_BASE = re.compile(rf"^python:3\.11\.\d+-slim-bookworm{DIGEST}$")
ENV_PREFIX = "FEEDBACK_MONITOR_"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def services() -> dict[str, Any]:
    found: dict[str, Any] = load(COMPOSE)["services"]
    return found


def mounts(service: str) -> Iterator[tuple[Path, str]]:
    """The bind mounts of a compose service: (path on the host, path in the container)."""
    for volume in services()[service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            yield (COMPOSE.parent / source).resolve(), target


def container_tree(service: str, root: Path) -> Path:
    """A copy of the service's bind mounts under ``root``, laid out as in its container."""
    for source, target in mounts(service):
        destination = root / target.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if source.is_dir() else shutil.copyfile
        copy(source, destination)
    return root


def option(service: str, name: str) -> str:
    """The value of ``--name=value`` in a service's command."""
    command: list[str] = services()[service]["command"]
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}=")]
    assert len(values) == 1, f"{service} has no single --{name}"
    return values[0]


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (keyword, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (keyword.upper(), rest.strip())
        for keyword, _, rest in (line.partition(" ") for line in lines)
        if keyword and not keyword.startswith("#")
    ]


def arguments(keyword: str) -> list[str]:
    return [rest for name, rest in instructions() if name == keyword]


def dockerfile_env() -> dict[str, str]:
    pairs = (item.split("=", 1) for rest in arguments("ENV") for item in rest.split())
    return dict((name, value) for name, value in pairs)


def _glob(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(\*\*|\*|\?)", pattern.strip("/"))
    wildcards = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcards.get(part, re.escape(part)) for part in parts) + "$")


def dockerignored(path: str) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent decides."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in (p for p in patterns if p and not p.startswith("#")):
        regex = _glob(pattern.removeprefix("!"))
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not pattern.startswith("!")
    return ignored


# compose.yaml


def test_compose_runs_the_service_prometheus_alertmanager_and_grafana() -> None:
    assert set(services()) == {"feedback-monitor", "prometheus", "alertmanager", "grafana"}


def test_every_third_party_image_is_pinned_by_version_and_digest() -> None:
    images = {name: s["image"] for name, s in services().items() if "build" not in s}
    assert len(images) == 3
    for name, image in images.items():
        assert PINNED.match(image), f"{name}: {image} is not pinned by version and digest"


def test_the_service_is_built_from_this_dockerfile_and_tagged_with_the_version() -> None:
    service = services()["feedback-monitor"]
    context = (COMPOSE.parent / service["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / service["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert service["image"] == f"feedback-monitor:{__version__}"


def test_every_mounted_host_path_exists() -> None:
    found = [source for name in services() for source, _ in mounts(name)]
    assert len(found) >= 6
    missing = [str(source) for source in found if not source.exists()]
    assert missing == []


def test_named_volumes_are_declared() -> None:
    named = {
        volume.split(":")[0]
        for service in services().values()
        for volume in service.get("volumes", [])
        if not volume.startswith(".")
    }
    assert named == set(load(COMPOSE)["volumes"])


def test_environment_names_only_settings_that_exist() -> None:
    names = [*services()["feedback-monitor"].get("environment", {}), *dockerfile_env()]
    ours = [name.removeprefix(ENV_PREFIX).lower() for name in names if name.startswith(ENV_PREFIX)]
    assert ours
    assert set(ours) <= set(Settings.model_fields)


def test_prometheus_config_of_the_stack_passes_promtool(tmp_path: Path) -> None:
    promtool = require("promtool", "prometheus")
    tree = container_tree("prometheus", tmp_path)
    config = tree / option("prometheus", "config.file").lstrip("/")
    checked = run(promtool, "check", "config", config)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout
    (rules,) = (source for source, target in mounts("prometheus") if target.endswith("/rules"))
    groups = load(rules / "feedback-monitor.rules.yml")["groups"]
    assert f"SUCCESS: {sum(len(g['rules']) for g in groups)} rules found" in checked.stdout


def test_prometheus_scrapes_and_alerts_the_stack_by_service_name() -> None:
    (config,) = (s for s, t in mounts("prometheus") if t == option("prometheus", "config.file"))
    loaded = load(config)
    jobs = {job["job_name"]: job for job in loaded["scrape_configs"]}
    (service_target,) = jobs["feedback-monitor"]["static_configs"][0]["targets"]
    assert service_target == f"feedback-monitor:{dockerfile_env()['FEEDBACK_MONITOR_PORT']}"
    (alerting,) = loaded["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alerting == "alertmanager:9093"
    assert "9093:9093" in services()["alertmanager"]["ports"]


def test_alertmanager_config_of_the_stack_passes_amtool(tmp_path: Path) -> None:
    amtool = require("amtool", "prometheus-alertmanager")
    tree = container_tree("alertmanager", tmp_path)
    checked = run(amtool, "check-config", tree / option("alertmanager", "config.file").lstrip("/"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_grafana_data_source_is_the_provisioned_one_at_the_stacks_prometheus() -> None:
    targets = {target: source for source, target in mounts("grafana")}
    stack = load(targets["/etc/grafana/provisioning/datasources/feedback-monitor.yml"])
    example = load(DEPLOY / "grafana" / "provisioning" / "datasources" / "feedback-monitor.yml")
    (source,), (reference,) = stack["datasources"], example["datasources"]
    assert source.pop("url") == "http://prometheus:9090"
    reference.pop("url")
    assert source == reference
    assert "9090:9090" in services()["prometheus"]["ports"]


def test_grafana_loads_the_dashboards_from_where_they_are_mounted() -> None:
    targets = {target: source for source, target in mounts("grafana")}
    providers = load(targets["/etc/grafana/provisioning/dashboards"] / "feedback-monitor.yml")
    for provider in providers["providers"]:
        dashboards = targets[provider["options"]["path"]]
        assert sorted(dashboards.glob("*.json")), f"no dashboard in {dashboards}"
        for dashboard in dashboards.glob("*.json"):
            json.loads(dashboard.read_text())


# Dockerfile


def test_base_image_is_python_311_slim_pinned_by_version_and_digest() -> None:
    (declared,) = (rest for rest in arguments("ARG") if rest.startswith("PYTHON_IMAGE="))
    assert PYTHON_BASE.match(declared.removeprefix("PYTHON_IMAGE="))
    stages = arguments("FROM")
    assert len(stages) == 2  # build the wheel, then install it on a clean base
    assert all(stage.split()[0] == "${PYTHON_IMAGE}" for stage in stages)


def test_runtime_installs_only_the_built_wheels_whose_dependencies_are_pinned() -> None:
    (install,) = (rest for rest in arguments("RUN") if "pip install" in rest)
    assert "--no-index" in install
    assert "from=build" in install
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert all("==" in requirement for requirement in project["project"]["dependencies"])
    assert all("==" in requirement for requirement in project["build-system"]["requires"])


def test_runs_as_a_user_that_is_not_root() -> None:
    user = arguments("USER")[-1].split(":")[0]
    assert user not in {"root", "0"}
    (install,) = (rest for rest in arguments("RUN") if "useradd" in rest)
    assert f"--uid 10001 --gid {user}" in install


def test_listens_on_every_interface_on_the_exposed_port_with_a_data_volume() -> None:
    env = dockerfile_env()
    assert env["FEEDBACK_MONITOR_HOST"] == "0.0.0.0"
    assert arguments("EXPOSE") == [env["FEEDBACK_MONITOR_PORT"]]
    assert arguments("VOLUME") == [env["FEEDBACK_MONITOR_DATA_DIR"]]
    assert arguments("ENTRYPOINT") == ['["feedback-monitor"]']
    assert arguments("CMD") == ['["serve"]']


def test_copies_files_that_exist_and_that_dockerignore_sends() -> None:
    sources = [
        source
        for rest in arguments("COPY")
        if not rest.startswith("--from")
        for source in rest.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not dockerignored(source), source
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = [project["project"]["readme"], *project["tool"]["hatch"]["build"]["targets"]
              ["wheel"]["packages"]]  # fmt: skip
    for path in needed:
        assert any(path == s or path.startswith(s + "/") for s in sources), path
    package = ROOT / "src" / "feedback_monitor"
    for file in [*package.rglob("*.py"), *(package / "dashboard" / "static").rglob("*")]:
        assert not dockerignored(str(file.relative_to(ROOT))), file
    assert dockerignored("tests/test_containers.py")
    assert dockerignored("src/feedback_monitor/__pycache__/app.cpython-311.pyc")


def healthcheck() -> list[str]:
    (check,) = arguments("HEALTHCHECK")
    command: list[str] = json.loads(check.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"]
    return [sys.executable, *command[1:]]


@pytest.mark.integration
def test_healthcheck_passes_on_a_running_service_and_fails_without_one(tmp_path: Path) -> None:
    with ServiceProcess(tmp_path / "data") as service:
        env = {"FEEDBACK_MONITOR_PORT": str(service.port)}
        up = subprocess.run(healthcheck(), env=env, capture_output=True, timeout=30, check=False)
        assert up.returncode == 0, up.stderr
    env = {"FEEDBACK_MONITOR_PORT": str(free_port())}
    down = subprocess.run(healthcheck(), env=env, capture_output=True, timeout=30, check=False)
    assert down.returncode != 0
