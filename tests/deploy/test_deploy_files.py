"""The deploy files are valid: compose against the compose spec, systemd units, env example."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prom_harness import DEPLOY, ROOT, tool

UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def _compose_check(path: Path) -> subprocess.CompletedProcess[str]:
    # check-jsonschema vendors the compose-spec JSON schema (vendor.compose-spec): offline.
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_matches_the_compose_specification() -> None:
    """deploy/docker-compose.yml validates against the bundled compose-spec schema."""
    result = _compose_check(DEPLOY / "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_rejects_an_invalid_file(tmp_path: Path) -> None:
    """The offline check is real: a misspelled service key fails it."""
    text = (DEPLOY / "docker-compose.yml").read_text()
    text = text.replace("    healthcheck:", "    helthcheck:", 1)
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text)
    assert _compose_check(broken).returncode != 0


def test_compose_mounts_exist_in_the_repository() -> None:
    """Every bind mount and the build context of the compose file name files that exist."""
    import yaml

    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} missing"
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()


def _systemd_root(tmp_path: Path) -> Path:
    """Build a root for `systemd-analyze verify --root`: our units, stub binaries, targets."""
    root = tmp_path / "root"
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(unit, units)
    targets = root / "usr" / "lib" / "systemd" / "system"
    targets.mkdir(parents=True)
    for target in Path("/lib/systemd/system").glob("*.target"):
        shutil.copy(target, targets)
    # verify checks that every Exec*= binary exists and is executable inside the root.
    for unit in UNITS:
        for match in re.finditer(r"^Exec\w+=[-@:+!]*(/\S+)", unit.read_text(), re.MULTILINE):
            binary = root / match.group(1).lstrip("/")
            binary.parent.mkdir(parents=True, exist_ok=True)
            binary.write_text("#!/bin/sh\n")
            binary.chmod(0o755)
    return root


def _verify(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("systemd-analyze"), "verify", f"--root={root}", *(unit.name for unit in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """Both units verify with no error and no warning (unknown keys are only warnings)."""
    assert [unit.name for unit in UNITS] == ["jobauth-api.service", "jobauth-supervisor.service"]
    result = _verify(_systemd_root(tmp_path))
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", (
        result.stdout + result.stderr
    )


def test_systemd_verify_reports_a_misspelled_directive(tmp_path: Path) -> None:
    """The verify check is real: an unknown key in a unit produces output that fails the test."""
    root = _systemd_root(tmp_path)
    unit = root / "etc/systemd/system/jobauth-api.service"
    unit.write_text(unit.read_text().replace("KillMode=", "KilMode="))
    assert "Unknown key" in _verify(root).stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_units_stop_the_master_gracefully_before_killing_everything(unit: Path) -> None:
    """KillMode=mixed (SIGTERM to the master only) and a stop timeout above the drain time."""
    text = unit.read_text()
    assert "\nKillMode=mixed\n" in text
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", text, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert stop > 30, "TimeoutStopSec must exceed the 30 s graceful timeout"
    runtime = re.search(r"^RuntimeDirectory=(\S+)$", text, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert re.search(rf"^Environment=PROMETHEUS_MULTIPROC_DIR=/run/{runtime}(/\w+)?$", text, re.M)
    assert "EnvironmentFile=/etc/jobauth/jobauth.env\n" in text


def _env_example() -> dict[str, str]:
    env = {}
    for line in (DEPLOY / "env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


def test_env_example_has_a_comment_for_every_variable() -> None:
    """Each variable line follows a comment (or another variable of the same commented group)."""
    variable = re.compile(r"^#?[A-Z][A-Z0-9_]+=")
    lines = (DEPLOY / "env.example").read_text().splitlines()
    for index, line in enumerate(lines):
        if variable.match(line):
            above = index - 1
            while above >= 0 and variable.match(lines[above]):
                above -= 1
            assert above >= 0 and lines[above].startswith("# "), f"no comment above {line!r}"


def test_api_refuses_the_example_secrets() -> None:
    """The placeholder secrets in env.example make the API's settings refuse to load."""
    from api.settings import ApiSettings
    from runtime.env import SettingsError

    with pytest.raises(SettingsError, match="placeholder"):
        ApiSettings.from_env(_env_example())


def test_queue_and_supervisor_accept_the_example_settings() -> None:
    """The non-secret values in env.example are valid for the queue library and the supervisor."""
    from queue_worker.settings import QueueSettings
    from supervisor.settings import load_settings

    queue = QueueSettings.from_env(_env_example())
    assert queue.mongodb_database == "app"
    supervisor = load_settings([], _env_example(), cpu_count=2)
    assert supervisor.metrics_port == 9300
    assert supervisor.graceful_timeout_s < 60  # below the unit's TimeoutStopSec


def test_prometheus_targets_and_grafana_datasource_match_the_compose_services() -> None:
    """prometheus.yml scrapes the ports compose configures; Grafana's datasource is the
    compose Prometheus service."""
    import yaml

    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    api_port = compose["api"]["environment"]["API_BIND"].rsplit(":", 1)[1]
    supervisor_port = compose["supervisor"]["environment"]["SUPERVISOR_METRICS_PORT"]
    assert compose["supervisor"]["environment"]["SUPERVISOR_METRICS_HOST"] == "0.0.0.0"
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert targets == {"api": [f"api:{api_port}"], "supervisor": [f"supervisor:{supervisor_port}"]}
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in compose["prometheus"]["ports"]


def test_gunicorn_refuses_to_serve_with_the_example_environment(tmp_path: Path) -> None:
    """The documented command, run with env.example as is, exits 3 (worker failed to boot)
    naming the placeholder secret; the API unit does not restart on that status."""
    env = {**_env_example(), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    env.update(API_BIND="127.0.0.1:0", API_WORKERS="1", PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "deploy/gunicorn.conf.py",
         "api.wsgi:app"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr[-2000:]
    assert "placeholder" in result.stderr
    unit = (DEPLOY / "systemd" / "jobauth-api.service").read_text()
    assert "\nRestartPreventExitStatus=3 4\n" in unit


def test_dockerfile_copies_only_files_that_exist_and_are_not_ignored() -> None:
    """Each COPY source exists and is re-included by deploy/Dockerfile.dockerignore."""
    sources = re.findall(r"^COPY (\S+) ", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    allowed = {
        line.removeprefix("!").rstrip("/")
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source in allowed, f"{source} is excluded from the build context"
