"""End to end: the real roles, scraped by a real Prometheus, answer every dashboard query.

One module-scoped run starts its own database server, the API under gunicorn
(`gunicorn -c deploy/gunicorn.conf.py api.wsgi:app`), the supervisor (`python -m supervisor`)
and Prometheus on loopback scraping both every second with the shipped prometheus.yml (targets
rewritten) and alerts.yml. It then drives what the dashboard shows: sign-ups, logins (good, bad,
rate-limited), a refresh-token replay, jobs that succeed, fail until dead, crash their consumer
until poison, a job whose consumer is frozen (SIGSTOP) until another one rescues it and the
frozen one's writes are fenced, a cancelled job, and a short database outage (readiness 503,
database errors, queue_stats_up 0). Every dashboard query must then return data, and every
alert expression must evaluate.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import localdb
import pytest
import yaml
from prom_harness import (
    ALERTS,
    CATALOGUE,
    DEPLOY,
    ROOT,
    PrometheusServer,
    alert_expressions,
    dashboard_queries,
    start_prometheus,
    tool,
)
from waiting import wait_until

API_WORKERS = 2
CONSUMERS = 2
PASSWORD = "plum-kettle-harbour-57"


# polling real processes; the deadline bounds the wait


def http(
    method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    """Send one JSON request; return (status, decoded body or {})."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except OSError:
        return 0, {}
    try:
        decoded = json.loads(raw) if raw else {}
    except ValueError:
        decoded = {}
    return status, decoded if isinstance(decoded, dict) else {}


def scrape(url: str) -> str:
    """Return the text of a /metrics endpoint ("" if it does not answer)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def _secret() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


@dataclass
class System:
    """The running roles and the Prometheus scraping them."""

    prometheus: PrometheusServer
    api_url: str
    supervisor_metrics_url: str


class Processes:
    """Long-running subprocesses started by the fixture, stopped (and reaped) at teardown."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.started.append((name, process))
        return process

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop_all(self) -> None:
        for _name, process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _name, process in reversed(self.started):
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            # Children of a master that died badly must not outlive the test.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _prometheus_config(path: Path, api_port: int, supervisor_port: int) -> None:
    """Write the shipped prometheus.yml with loopback targets, 1 s intervals and our rules."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ALERTS)]
    ports = {"api": api_port, "supervisor": supervisor_port}
    assert {job["job_name"] for job in config["scrape_configs"]} == set(ports)
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
        job["scrape_interval"] = job["scrape_timeout"] = "1s"
    # During the database outage the exporter waits its 2 s server-selection timeout before it
    # reports queue_stats_up 0; a 1 s scrape timeout would only show the target down instead.
    supervisor = next(job for job in config["scrape_configs"] if job["job_name"] == "supervisor")
    supervisor["scrape_interval"] = supervisor["scrape_timeout"] = "3s"
    path.write_text(yaml.safe_dump(config))


def _environment(tmp: Path, db_uri: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests" / "helpers")]),
        QUEUE_TASK_MODULES="api.tasks,schedule_defs_e2e",
        MONGODB_URI=db_uri,
        MONGODB_DATABASE="e2e",
        API_JWT_KEYS=f"k1:{_secret()}",
        API_PASSWORD_PEPPER=_secret(),
        API_ACCOUNT_TOKEN_KEYS=f"t1:{_secret()}",
        API_MFA_KEYS=f"m1:{_secret()}",
        API_BCRYPT_COST="4",
        API_LOGIN_FREE_FAILURES="3",
        API_SUBMITTABLE_TASKS="bench.noop,bench.sleep,bench.fail,bench.crash",
        API_DB_TIMEOUT_MS="500",
        API_READY_TIMEOUT_MS="300",
        QUEUE_ENABLE_BENCH_TASKS="1",
        QUEUE_MAX_ATTEMPTS="2",
        QUEUE_POISON_CRASHES="2",
        QUEUE_LEASE_S="2",
        QUEUE_POLL_MAX_S="0.2",
        QUEUE_BACKOFF_BASE_S="0.1",
        QUEUE_BACKOFF_CAP_S="0.2",
        MAIL_OUTBOX_DIR=str(tmp / "outbox"),
        SUPERVISOR_BACKOFF_BASE_S="0.1",
        SUPERVISOR_DB_WAIT_S="10",
    )
    return env


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """Start database, API, supervisor and Prometheus; drive traffic; yield the running set."""
    tmp = tmp_path_factory.mktemp("e2e")
    db_port = localdb.free_port()
    db = localdb.start(port=db_port, data_dir=tmp / "db", log_path=tmp / "db.log")
    processes = Processes(tmp)
    prometheus: PrometheusServer | None = None
    try:
        env = _environment(tmp, db.uri("e2e"))
        api_port, supervisor_port = localdb.free_port(), localdb.free_port()
        api_env = {
            **env,
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / "api-metrics"),
            "API_BIND": f"127.0.0.1:{api_port}",
            "API_WORKERS": str(API_WORKERS),
        }
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        # Exactly the documented command; everything else comes from the environment.
        processes.start(
            "api", [gunicorn, "-c", str(DEPLOY / "gunicorn.conf.py"), "api.wsgi:app"], api_env
        )
        supervisor_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp / "supervisor-metrics")}
        processes.start(
            "supervisor",
            [sys.executable, "-m", "supervisor", "--workers", str(CONSUMERS),
             "--metrics-port", str(supervisor_port)],
            supervisor_env,
        )  # fmt: skip
        api_url = f"http://127.0.0.1:{api_port}"
        supervisor_url = f"http://127.0.0.1:{supervisor_port}/metrics"
        try:
            wait_until(
                lambda: http("GET", f"{api_url}/healthz")[0], what="the API to answer /healthz"
            )
            wait_until(
                lambda: f"supervisor_consumers_alive {CONSUMERS}.0" in scrape(supervisor_url),
                what="the supervisor's consumers",
            )
            config = tmp / "prometheus.yml"
            _prometheus_config(config, api_port, supervisor_port)
            prometheus = start_prometheus(config, tmp / "prometheus-data")
            wait_until(lambda: _targets_up(prometheus) == 2, what="both targets up")
            _drive(api_url, env, db, prometheus)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\n--- api log\n{processes.log('api')}\n"
                f"--- supervisor log\n{processes.log('supervisor')}"
            ) from None
        yield System(prometheus, api_url, supervisor_url)
    finally:
        if prometheus is not None:
            prometheus.stop()
        processes.stop_all()
        db.stop()


def _targets_up(prometheus: PrometheusServer) -> int:
    targets = prometheus.get("/api/v1/targets")["data"]["activeTargets"]
    return sum(1 for target in targets if target["health"] == "up")


def _drive(api_url: str, env: dict[str, str], db: localdb.LocalDB, prom: PrometheusServer) -> None:
    """Produce every kind of event the dashboard and alerts look at."""
    token = _api_traffic(api_url)
    store = _store(env)
    try:
        _jobs(api_url, token, store)
        _frozen_consumer_is_rescued_and_fenced(api_url, token, store)
        _database_outage(api_url, db, prom)
        # Series born in a burst hold one value and have a zero rate (histogram_quantile then
        # gives NaN); steady traffic after them is what a real dashboard sees.
        _jobs_succeed(store, [_submit(api_url, token, "bench.noop", {}) for _ in range(3)])
        assert http("GET", f"{api_url}/users/profile", token=token)[0] == 200
    finally:
        store.db.client.close()


def _api_traffic(api_url: str) -> str:
    """Sign up, log in, fail logins until rate-limited, replay a refresh token; return a token."""
    alice = {"name": "Alice", "email": "alice@example.com", "password": PASSWORD}
    status, tokens = http("POST", f"{api_url}/users/signup", alice)
    assert status == 201, (status, tokens)
    assert http("POST", f"{api_url}/users/signup", alice)[0] == 409
    login = {"email": alice["email"], "password": PASSWORD}
    status, session = http("POST", f"{api_url}/users/login", login)
    assert status == 200, (status, session)
    assert http("GET", f"{api_url}/users/profile", token=session["access_token"])[0] == 200
    old_refresh = session["refresh_token"]
    status, rotated = http("POST", f"{api_url}/users/refresh", {"refresh_token": old_refresh})
    assert status == 200
    assert (
        http("POST", f"{api_url}/users/refresh", {"refresh_token": rotated["refresh_token"]})[0]
        == 200
    )
    # Two rotations behind is past the retry grace: a replay, refused.
    assert http("POST", f"{api_url}/users/refresh", {"refresh_token": old_refresh})[0] == 401
    bob = {"name": "Bob", "email": "bob@example.com", "password": PASSWORD}
    assert http("POST", f"{api_url}/users/signup", bob)[0] == 201
    wrong = {"email": bob["email"], "password": "not-" + PASSWORD}
    statuses = [http("POST", f"{api_url}/users/login", wrong)[0] for _ in range(5)]
    assert 401 in statuses and 429 in statuses, statuses
    assert http("GET", f"{api_url}/users/not-an-id")[0] == 404
    assert http("GET", f"{api_url}/readyz")[0] == 200
    return str(tokens["access_token"])


def _store(env: dict[str, str]) -> Any:
    """A JobStore on the test's database, to watch and cancel jobs."""
    from queue_worker.connection import connect, database
    from queue_worker.settings import QueueSettings
    from queue_worker.store import JobStore

    settings = QueueSettings.from_env(env)
    return JobStore(database(connect(settings, app_name="e2e-test"), settings), settings)


def _submit(api_url: str, token: str, task: str, payload: dict[str, Any], **extra: Any) -> str:
    status, job = http(
        "POST", f"{api_url}/jobs", {"task": task, "payload": payload, **extra}, token
    )
    assert status == 202, (status, job)
    return str(job["id"])


def _state(store: Any, job_id: str) -> str:
    job = store.get(job_id)
    return str(job.state.value) if job is not None else "missing"


def _jobs(api_url: str, token: str, store: Any) -> None:
    """Jobs that succeed, fail until dead, crash until poison; one cancelled, one scheduled."""
    ok = [_submit(api_url, token, "bench.noop", {}) for _ in range(5)]
    failing = _submit(api_url, token, "bench.fail", {})
    later = _submit(api_url, token, "bench.noop", {}, delay_s=3600)
    assert store.cancel(later) is not None
    _submit(api_url, token, "bench.noop", {}, delay_s=3600)  # stays pending (scheduled)
    too_late = store.enqueue("bench.noop", start_by=datetime.now(UTC) - timedelta(seconds=1))
    _jobs_succeed(store, ok)
    wait_until(lambda: _state(store, too_late.id) == "cancelled", what="the late job to expire")
    wait_until(lambda: _state(store, failing) == "dead", what="the failing job to go dead")
    assert store.get(failing).dead_reason == "exhausted"
    # Only now: a crash releases (and counts a crash on) every job its process holds, so a job
    # sharing the consumer with the crasher twice would go dead as poison too.
    crashing = _submit(api_url, token, "bench.crash", {})
    wait_until(
        lambda: _state(store, crashing) == "dead", what="the crashing job to go dead (poison)"
    )
    assert store.get(crashing).dead_reason == "poison"


def _jobs_succeed(store: Any, job_ids: list[str]) -> None:
    for job_id in job_ids:
        wait_until(
            lambda j=job_id: _state(store, j) == "succeeded", what=f"job {job_id} to succeed"
        )


def _lease_owner_pid(store: Any, job_id: str) -> int | None:
    """Return the pid of the consumer running the job (lease_owner is host:pid), or None."""
    job = store.get(job_id)
    if job is None or job.state.value != "running" or not job.lease_owner:
        return None
    return int(job.lease_owner.rsplit(":", 1)[1])


def _frozen_consumer_is_rescued_and_fenced(api_url: str, token: str, store: Any) -> None:
    """Freeze the consumer running a job past its lease: another one rescues the job, and the
    frozen one's next write (heartbeat or completion) is fenced off once it thaws."""
    job_id = _submit(api_url, token, "bench.sleep", {"ms": 5000})
    frozen = wait_until(lambda: _lease_owner_pid(store, job_id), what="the sleep job to be claimed")
    os.kill(frozen, signal.SIGSTOP)
    try:
        wait_until(
            lambda: (_lease_owner_pid(store, job_id) or frozen) != frozen,
            what="another consumer to rescue the job",
        )
    finally:
        os.kill(frozen, signal.SIGCONT)
    wait_until(lambda: _state(store, job_id) == "succeeded", what="the rescued job to succeed")


def _database_outage(api_url: str, db: localdb.LocalDB, prom: PrometheusServer) -> None:
    """Stop the database briefly: /readyz answers 503, and the exporter reports it cannot read."""
    db.stop()
    wait_until(lambda: http("GET", f"{api_url}/readyz")[0] == 503, what="/readyz to fail")
    wait_until(lambda: http(
        "POST", f"{api_url}/users/login", {"email": "x@example.com", "password": PASSWORD}
    )[0] >= 500, what="a 5xx from a database route")  # fmt: skip
    wait_until(
        lambda: _has_data(prom, "queue_stats_up == 0"), what="Prometheus to see queue_stats_up == 0"
    )
    restarted = localdb.start(port=db.port, data_dir=db.data_dir)
    db.process = restarted.process
    wait_until(lambda: http("GET", f"{api_url}/readyz")[0] == 200, what="/readyz to recover")
    wait_until(lambda: _has_data(prom, "queue_stats_up == 1"), what="queue stats to recover")


def _has_data(prom: PrometheusServer, expr: str) -> bool:
    answer = prom.query(expr)
    return answer["status"] == "success" and bool(answer["data"]["result"])


def _numbers(answer: dict[str, Any]) -> list[float]:
    data = answer["data"]
    if data["resultType"] == "scalar":
        return [float(data["result"][1])]
    return [float(sample["value"][1]) for sample in data["result"]]


DASHBOARD_QUERIES = [
    pytest.param(title, expr, id=f"{index}-{title}")
    for index, (title, expr) in enumerate(dashboard_queries())
]


@pytest.mark.parametrize("title,expr", DASHBOARD_QUERIES)
def test_dashboard_query_returns_data(system: System, title: str, expr: str) -> None:
    """The panel's query parses and returns at least one real (non-NaN) value from live data."""
    last: dict[str, Any] = {}

    def answered() -> bool:
        nonlocal last
        last = system.prometheus.query(expr)
        assert last["status"] == "success", f"{title}: {expr}: {last.get('error')}"
        return any(value == value for value in _numbers(last))  # NaN != NaN

    try:
        wait_until(answered, timeout_s=10, what=f"data for {title!r}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nquery: {expr}\nlast answer: {last}") from None


@pytest.mark.parametrize("name,expr", alert_expressions(), ids=[n for n, _ in alert_expressions()])
def test_alert_expression_evaluates_against_live_data(system: System, name: str, expr: str) -> None:
    """Each alert expression parses and evaluates on the live series (firing or not)."""
    answer = system.prometheus.query(expr)
    assert answer["status"] == "success", f"{name}: {answer.get('error')}"


def test_prometheus_loaded_every_alert_rule(system: System) -> None:
    """The server loaded alerts.yml healthy: every rule is known and none failed to evaluate."""
    groups = system.prometheus.get("/api/v1/rules")["data"]["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(rules) == {name for name, _ in alert_expressions()}
    broken = {
        name: rule.get("lastError") for name, rule in rules.items() if rule["health"] == "err"
    }
    assert not broken


@pytest.mark.parametrize("role", ["api", "supervisor"])
def test_metrics_output_passes_promtool_check_metrics(system: System, role: str) -> None:
    """The role's /metrics text passes `promtool check metrics` (naming and format lint)."""
    url = f"{system.api_url}/metrics" if role == "api" else system.supervisor_metrics_url
    text = wait_until(lambda: scrape(url), timeout_s=10, what=f"{role} /metrics to answer")
    result = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("role", ["api", "supervisor"])
def test_every_catalogued_metric_is_exported_with_samples(system: System, role: str) -> None:
    """Each metric of the role's catalogue appears in its /metrics with at least one sample."""
    url = f"{system.api_url}/metrics" if role == "api" else system.supervisor_metrics_url
    missing: list[str] = []

    def complete() -> bool:
        nonlocal missing
        lines = scrape(url).splitlines()
        sampled = {line.split("{")[0].split(" ")[0] for line in lines if not line.startswith("#")}
        missing = [
            family
            for family in CATALOGUE[role]
            if not sampled & {family, f"{family}_bucket", f"{family}_count"}
        ]
        return not missing

    try:
        wait_until(complete, timeout_s=10, what=f"every catalogued metric in {role} /metrics")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {role} /metrics lacks samples of {missing}") from None


def test_dead_jobs_alert_fires_on_the_live_system(system: System) -> None:
    """QueueDeadJobs (no `for`) is firing after jobs went dead and poison for real."""

    def firing() -> list[dict[str, Any]]:
        alerts = system.prometheus.get("/api/v1/alerts")["data"]["alerts"]
        return [
            alert
            for alert in alerts
            if alert["labels"]["alertname"] == "QueueDeadJobs" and alert["state"] == "firing"
        ]

    alerts = wait_until(firing, timeout_s=20, what="QueueDeadJobs to fire")
    assert alerts[0]["labels"]["queue"] == "default"
