"""A real Prometheus server on loopback for the deploy tests, and the tools they share.

Prometheus and promtool come from Debian's `prometheus` package, installed by
scripts/install_test_tools.sh (the Makefile's test target runs it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import localdb

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "jobauth.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
INSTALL_HINT = "run scripts/install_test_tools.sh (as root) to install the Debian packages"
# The metrics catalogue (docs/operations.md): role -> the families its /metrics must export
# after the end-to-end run's traffic. queue_jobs_cancelled_total is left out: cancels run in the
# operator CLI (here: the test process), which nothing scrapes; the dashboard reads them from
# queue_depth.
PROCESS_TREE = [
    "process_cpu_seconds_total", "process_start_time_seconds", "process_resident_memory_bytes",
    "process_open_fds", "process_tree_processes",
]  # fmt: skip
CATALOGUE: dict[str, list[str]] = {
    "api": [
        "http_requests_total", "http_request_duration_seconds", "http_requests_in_flight",
        "auth_bcrypt_queue_length", "auth_bcrypt_seconds", "db_operation_errors_total",
        "auth_refresh_reuse_detected_total", "auth_login_failures_total",
        "auth_rate_limited_total", "queue_jobs_enqueued_total", "api_event_errors_total",
        "auth_account_flows_total", "auth_security_events_total",
        *PROCESS_TREE,
    ],
    "supervisor": [
        "supervisor_consumers_alive", "supervisor_consumers_desired", "supervisor_restarts_total",
        "supervisor_crash_looping_slots", "queue_depth", "queue_oldest_due_job_age_seconds",
        "queue_stats_up", "queue_stats_scrape_seconds", "queue_jobs_started_total",
        "queue_jobs_expired_total", "queue_schedule_ticks_total",
        "queue_schedule_enqueue_lag_seconds", "queue_schedule_last_success_timestamp_seconds",
        "queue_schedule_interval_seconds",
        "queue_jobs_succeeded_total", "queue_jobs_failed_total", "queue_jobs_dead_total",
        "queue_job_run_seconds", "queue_job_wait_seconds", "queue_leases_lost_total",
        "queue_jobs_rescued_total", "queue_jobs_released_total", "queue_jobs_poison_total",
        "queue_jobs_promoted_total", "queue_promotions_total", *PROCESS_TREE,
    ],
}  # fmt: skip
# Series Prometheus makes itself.
NOT_CATALOGUED = {"up", "scrape_duration_seconds"}
# Grafana's interval variables, replaced by a fixed window when a query runs outside Grafana.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "15s", "$__range": "1h"}


def tool(name: str) -> str:
    """Return the path of a required command-line tool, or fail saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} not found: {INSTALL_HINT}")
    return path


def dashboard_queries() -> list[tuple[str, str]]:
    """Return (panel title, PromQL) for every target of every dashboard panel, variables filled."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            queries.append((panel["title"], fill_grafana_variables(target["expr"])))
    return queries


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def fill_grafana_variables(expr: str) -> str:
    """Replace Grafana's $__ variables by fixed durations so Prometheus can run the query."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def alert_expressions() -> list[tuple[str, str]]:
    """Return (alert name, expression) for every rule in alerts.yml."""
    import yaml

    rules = yaml.safe_load(ALERTS.read_text())
    return [
        (rule.get("alert") or rule["record"], rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


@dataclass
class PrometheusServer:
    """A running Prometheus: its process and HTTP API base URL."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def query(self, expr: str) -> dict[str, Any]:
        """Run an instant query; return Prometheus' JSON answer (status "error" on bad PromQL)."""
        data = urllib.parse.urlencode({"query": expr}).encode()
        request = urllib.request.Request(f"{self.url}/api/v1/query", data=data)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as exc:  # 400 bad_data / 422 execution errors
            answer = json.load(exc)
        return answer

    def get(self, path: str) -> dict[str, Any]:
        """GET an API path (e.g. /api/v1/targets) and return its JSON."""
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
            answer: dict[str, Any] = json.load(response)
        return answer

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        localdb.stop_process(self.process)


def start_prometheus(config: Path, data_dir: Path, timeout_s: float = 30.0) -> PrometheusServer:
    """Start Prometheus on a free loopback port with `config`; wait until it is ready."""
    port = localdb.free_port()
    log_path = data_dir.parent / "prometheus.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={data_dir}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = PrometheusServer(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited: {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.1)  # polling a starting server; the deadline bounds it
    server.stop()
    raise AssertionError(
        f"prometheus not ready after {timeout_s} s: {log_path.read_text()[-2000:]}"
    )
