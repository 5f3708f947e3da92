"""A real gunicorn + gevent API process for integration tests, and a tiny HTTP client."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import localdb
from apihelpers import secret_env

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = str(Path(sys.executable).parent / "gunicorn")
START_TIMEOUT_S = 30.0


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ApiServer:
    """A running gunicorn serving api.wsgi:app on 127.0.0.1:port."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    metrics_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout_s: float = 30.0,
    ) -> Response:
        """Send one request on a fresh connection and read the whole response."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        all_headers = dict(headers or {})
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=all_headers)
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def stop(self) -> None:
        """SIGTERM gunicorn (graceful) and wait; SIGKILL if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_api(base_env: dict[str, str], workers: int = 2, **extra: str) -> ApiServer:
    """Start gunicorn with the project's config and wait until /healthz answers."""
    port = localdb.free_port()
    metrics_dir = Path(tempfile.mkdtemp(prefix="api-test-metrics-"))
    handle, log_name = tempfile.mkstemp(prefix="api-test-", suffix=".log")
    os.close(handle)
    log_path = Path(log_name)
    env = {
        **base_env,
        **secret_env(),
        "API_BIND": f"127.0.0.1:{port}",
        "API_WORKERS": str(workers),
        "API_GRACEFUL_TIMEOUT_S": "5",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "PYTHONPATH": str(ROOT),
        # The API only accepts tasks its registry knows; the tests submit the bench tasks.
        "QUEUE_ENABLE_BENCH_TASKS": "1",
        "API_SUBMITTABLE_TASKS": "bench.noop,bench.sleep",
        **extra,
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [GUNICORN, "-c", "deploy/gunicorn.conf.py", "api.wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = ApiServer(process, port, log_path, metrics_dir, env)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = server.log()
            server.stop()
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{log}")
        try:
            if server.request("GET", "/healthz", timeout_s=1).status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.05)  # polling for readiness with a deadline, not synchronising on time
    log = server.log()
    server.stop()
    raise RuntimeError(f"gunicorn did not answer within {START_TIMEOUT_S}s:\n{log}")
