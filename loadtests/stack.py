"""The whole service for a load run: local database, the API under gunicorn, the supervisor.

Started as real processes with throwaway secrets and their own data directory under var/, and
stopped in reverse order. Also measures how much CPU each side used, so a report can say how
many cores the server and the load generator took.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from harness import (
    PYTHON,
    ROOT,
    DatabaseServer,
    ManagedProcess,
    free_port,
    project_env,
    spawn,
    start_supervisor,
)

GUNICORN_CONF = Path("deploy/gunicorn.conf.py")
READY_TIMEOUT_S = 60.0


def random_secret() -> str:
    """Return a fresh base64 secret (32 random bytes): never a constant, never logged."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def api_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the API variables a throwaway run needs (fresh secrets, bench tasks allowed)."""
    env = {
        "API_JWT_KEYS": f"load:{random_secret()}",
        "API_PASSWORD_PEPPER": random_secret(),
        "API_ACCOUNT_TOKEN_KEYS": f"load:{random_secret()}",
        "API_MFA_KEYS": f"load:{random_secret()}",
        "QUEUE_ENABLE_BENCH_TASKS": "1",
        "API_SUBMITTABLE_TASKS": "bench.noop,bench.sleep",
        # All load comes from one loopback address: per-IP limits (there against one abusive
        # client) would measure the limiter, not the service.
        "API_SIGNUP_MAX_PER_IP": "1000000",
        "API_LOGIN_MAX_FAILURES_PER_IP": "1000000",
    }
    env.update(extra or {})
    return env


@dataclass
class Stack:
    """Running service processes (any may be absent) and the URL of the API."""

    work_dir: Path
    database: DatabaseServer | None = None
    api: ManagedProcess | None = None
    supervisor: ManagedProcess | None = None
    url: str = ""
    uri: str = ""
    database_name: str = ""
    processes: list[ManagedProcess] = field(default_factory=list)

    def stop(self) -> None:
        """Stop everything this stack started, newest first."""
        for process in reversed(self.processes):
            process.stop(timeout_s=20)
        self.processes.clear()
        if self.database is not None:
            self.database.stop()

    def server_pids(self) -> list[int]:
        """Return the root pids of the server side (API, supervisor, local database)."""
        pids = [p.pid for p in self.processes]
        if self.database is not None and self.database.local is not None:
            pids.append(self.database.local.pid)
        return pids


def start_stack(
    work_dir: Path,
    *,
    api_workers: int = 2,
    consumers: int = 2,
    concurrency: int = 8,
    env_extra: Mapping[str, str] | None = None,
    with_supervisor: bool = True,
    port: int | None = None,
    server_uri: str | None = None,
    database: str | None = None,
    code_root: Path = ROOT,
) -> Stack:
    """Start database (unless MONGODB_URI or `server_uri`), API and supervisor; wait for ready."""
    work_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(work_dir)
    try:
        if server_uri is None:
            stack.database = DatabaseServer.open(work_dir / "db")
            server = stack.database
        else:
            server = DatabaseServer(base_uri=server_uri)
        database = database or f"load_{int(time.time())}"
        uri = server.uri(database)
        stack.uri, stack.database_name = uri, database
        extra = {"MAIL_OUTBOX_DIR": str(work_dir / "outbox"), **api_env(env_extra)}
        env = project_env(uri, database, extra)
        if code_root != ROOT:  # another commit's tree (loadtests/compare.py)
            env["PYTHONPATH"] = str(code_root)
        if with_supervisor:
            stack.supervisor = start_supervisor(
                env, work_dir / "supervisor.log", workers=consumers, concurrency=concurrency,
                cwd=code_root,
            )  # fmt: skip
            stack.processes.append(stack.supervisor)
        port = port or free_port()
        stack.api = start_api(env, work_dir, port, api_workers, cwd=code_root)
        stack.processes.append(stack.api)
        stack.url = f"http://127.0.0.1:{port}"
        wait_ready(stack.url, stack.api)
    except BaseException:
        stack.stop()
        raise
    return stack


def start_api(
    env: Mapping[str, str], work_dir: Path, port: int, workers: int, cwd: Path = ROOT
) -> ManagedProcess:
    """Start the API under gunicorn with its own config, on `port` with `workers` workers."""
    prom_dir = work_dir / "prometheus-api"
    prom_dir.mkdir(parents=True, exist_ok=True)
    for stale in prom_dir.glob("*.db"):
        stale.unlink()
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(prom_dir)}
    argv = [PYTHON, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    if (cwd / GUNICORN_CONF).exists():
        argv += ["-c", str(GUNICORN_CONF)]  # relative: the tree's own config
    argv.append("api.wsgi:app")
    return spawn("api", argv, env, work_dir / "api.log", cwd=cwd)


def wait_ready(url: str, api: ManagedProcess, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll GET /readyz until it answers 200; fail early if gunicorn exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        if not api.alive():
            raise RuntimeError(f"the API exited ({api.process.returncode}):\n{api.log_tail()}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"API not ready within {timeout_s}s:\n{api.log_tail()}")
        time.sleep(0.2)


def tree_cpu_s(pids: Sequence[int]) -> float:
    """Return CPU seconds used so far by these processes, their live and their reaped children."""
    total = 0.0
    seen: set[int] = set()
    for pid in pids:
        try:
            root = psutil.Process(pid)
            members = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in members:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system + times.children_user + times.children_system
    return total


def cpu_count() -> int:
    return os.cpu_count() or 1
