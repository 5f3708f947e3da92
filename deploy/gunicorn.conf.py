"""gunicorn settings for the API: `gunicorn -c deploy/gunicorn.conf.py api.wsgi:app`.

gevent workers (one process per core by default, many greenlets each); bcrypt runs in a
per-worker thread pool so it never blocks a worker's event loop. Everything here can be set
from the environment:

    API_BIND                 127.0.0.1:8000
    API_WORKERS              number of CPU cores
    API_WORKER_CONNECTIONS   1000 (greenlets per worker)
    API_TIMEOUT_S            30   (a worker silent this long is killed and replaced)
    API_GRACEFUL_TIMEOUT_S   30   (on SIGTERM/SIGHUP, time to finish in-flight requests)
    API_KEEPALIVE_S          5
    API_HASH_THREADS         number of CPU cores (bcrypt threads per worker; read by the app)
    API_MAX_REQUESTS         0    (recycle a worker after N requests; 0 = never)
    API_ACCESS_LOG           unset: no access log; "-" for stderr, or a file path
    API_CONTROL_SOCKET       unset: gunicorn's control socket is disabled
    PROMETHEUS_MULTIPROC_DIR a fresh temporary directory when unset

Prometheus multiprocess mode: the directory is chosen and emptied here, in the master, before
any worker imports prometheus_client. In child_exit a dead worker's live gauges are dropped and
its counters and histograms are folded into the directory's archive files
(queue_worker.metrics_files), so scrape time does not grow with worker restarts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

_env = os.environ

bind = _env.get("API_BIND", "127.0.0.1:8000")
workers = int(_env.get("API_WORKERS", str(os.cpu_count() or 1)))
worker_class = "gevent"
worker_connections = int(_env.get("API_WORKER_CONNECTIONS", "1000"))
timeout = int(_env.get("API_TIMEOUT_S", "30"))
graceful_timeout = int(_env.get("API_GRACEFUL_TIMEOUT_S", "30"))
keepalive = int(_env.get("API_KEEPALIVE_S", "5"))
max_requests = int(_env.get("API_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
proc_name = "jobauth-api"
accesslog = _env.get("API_ACCESS_LOG") or None
# Request lines of the access log never include bodies or Authorization headers.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
# Keep request heads small: tokens travel in headers, nothing else needs big ones.
limit_request_line = 4094
limit_request_field_size = 8190
# gunicorn 27's control socket defaults to one path per user, which two instances on one host
# would fight over: off unless a path is given.
control_socket = _env.get("API_CONTROL_SOCKET", "")
control_socket_disable = not control_socket


_created_dirs: list[str] = []


def _multiproc_dir() -> str:
    path = _env.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix="api-metrics-")
        _env["PROMETHEUS_MULTIPROC_DIR"] = path
        _created_dirs.append(path)
    return path


def on_starting(server: Any) -> None:
    """Empty the metrics directory: files of an earlier run would be summed in."""
    from queue_worker.metrics_files import reset_directory

    reset_directory(_multiproc_dir())


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges and fold its counters into the archive files."""
    from prometheus_client import multiprocess

    from queue_worker.metrics_files import archive_dead_process

    multiprocess.mark_process_dead(worker.pid)
    archive_dead_process(worker.pid)


def on_exit(server: Any) -> None:
    """Remove the metrics directory if this config created it (a temporary one)."""
    for path in _created_dirs:
        shutil.rmtree(path, ignore_errors=True)
