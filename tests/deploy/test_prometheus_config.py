"""Prometheus config and alert rules pass promtool, and every dashboard query parses."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest
from prom_harness import (
    CATALOGUE,
    DEPLOY,
    NOT_CATALOGUED,
    PrometheusServer,
    alert_expressions,
    dashboard_queries,
    start_prometheus,
    tool,
)

PROMETHEUS_DIR = DEPLOY / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60
    )


def test_prometheus_config_passes_promtool_check_config() -> None:
    """deploy/prometheus/prometheus.yml (and the rule file it loads) is a valid config."""
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_promtool_check_rules() -> None:
    """alerts.yml parses, and every alert has a valid expression and templates."""
    result = _promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_unit_tests_pass() -> None:
    """alerts.test.yml passes `promtool test rules`: each alert fires and stays quiet as meant."""
    result = _promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case_in_the_unit_tests() -> None:
    """alerts.test.yml names every alert in a case that expects it and in one that expects none."""
    import yaml

    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts.test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for name, _ in alert_expressions():
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in mine), f"{name} never expected to fire"
        quiet = [case for case in mine if not case.get("exp_alerts")]
        # A quiet case is either an explicit empty expectation or, in a firing case, a second
        # series that must not appear among the expected alerts (checked by promtool itself).
        has_other_series = any(
            len(test["input_series"]) > 1
            for test in tests
            for case in test["alert_rule_test"]
            if case["alertname"] == name and case.get("exp_alerts")
        )
        assert quiet or has_other_series, f"{name} has no not-firing case"


@pytest.fixture(scope="module")
def empty_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus with no targets: enough to parse queries."""
    base = tmp_path_factory.mktemp("prometheus")
    config = base / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    server = start_prometheus(config, base / "data")
    yield server
    server.stop()


def test_every_dashboard_query_parses(empty_prometheus: PrometheusServer) -> None:
    """Each target expression of the Grafana dashboard is PromQL a real Prometheus accepts."""
    queries = dashboard_queries()
    assert len(queries) >= 30
    errors = []
    for title, expr in queries:
        answer = empty_prometheus.query(expr)
        if answer["status"] != "success":
            errors.append(f"{title}: {expr}: {answer.get('error')}")
    assert not errors, "\n".join(errors)


def test_a_malformed_query_is_reported_as_an_error(empty_prometheus: PrometheusServer) -> None:
    """The parse check above can fail: Prometheus rejects broken PromQL with status "error"."""
    answer = empty_prometheus.query("sum by (route) (rate(http_requests_total[5m])")
    assert answer["status"] == "error"
    assert answer["errorType"] == "bad_data"


def test_dashboard_panels_use_the_provisioned_datasource() -> None:
    """Every panel and target points at the datasource uid the provisioning file creates."""
    import json

    import yaml

    datasources = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    uids = {source["uid"] for source in datasources}
    dashboard = json.loads((DEPLOY / "grafana/dashboards/jobauth.json").read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in uids, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids, panel["title"]


def test_dashboard_provisioning_points_at_the_mounted_dashboard_directory() -> None:
    """The dashboard provider's path is where docker-compose mounts deploy/grafana/dashboards."""
    import yaml

    provisioning = DEPLOY / "grafana/provisioning/dashboards/jobauth.yml"
    provider = yaml.safe_load(provisioning.read_text())["providers"][0]
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts


def _metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (identifiers followed by { or [ or space)."""
    without_labels = re.sub(r"\{[^}]*\}", "{}", expr)
    keywords = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "offset", "bool"}  # fmt: skip
    names = set(re.findall(r"\b([a-z_][a-z0-9_]*)\b(?!\s*\()", without_labels))
    labels = set(re.findall(r"(?:by|without|on|ignoring)\s*\(([^)]*)\)", without_labels))
    label_names = {name.strip() for group in labels for name in group.split(",")}
    return {name for name in names - keywords - label_names if "_" in name or name == "up"}


def test_dashboard_and_alerts_use_only_catalogued_metrics() -> None:
    """Every series name in a dashboard query or alert is in the metrics catalogue (histograms
    via _bucket/_count), so a rename shows up here before any Prometheus runs."""
    known = set(NOT_CATALOGUED)
    for families in CATALOGUE.values():
        for family in families:
            known |= {family, f"{family}_bucket", f"{family}_count", f"{family}_sum"}
    used = {
        name
        for _, expr in dashboard_queries() + alert_expressions()
        for name in _metric_names(expr)
    }
    assert used, "no metric names found"
    assert used <= known, f"not in the catalogue: {sorted(used - known)}"
