"""gunicorn settings for the API: `gunicorn -c deploy/gunicorn.conf.py api.wsgi:app`.

gevent workers (one process per core by default, many greenlets each); bcrypt runs in a
per-worker thread pool so it never blocks a worker's event loop. Everything here can be set
from the environment:

API_BIND, API_WORKERS, API_WORKER_CONNECTIONS, API_TIMEOUT_S, API_GRACEFUL_TIMEOUT_S,
API_KEEPALIVE_S, API_MAX_REQUESTS, API_ACCESS_LOG, API_CONTROL_SOCKET,
API_MAX_CONNECTIONS_PER_CLIENT: parsed by
`api.settings.ServerSettings` (the table there holds defaults and bounds), and
PROMETHEUS_MULTIPROC_DIR (a fresh temporary directory when unset).

Prometheus multiprocess mode: the directory is chosen and emptied here, in the master, before
any worker imports prometheus_client. In child_exit a dead worker's live gauges are dropped and
its counters and histograms are folded into the directory's archive files
(runtime/metrics_files.py), so scrape time does not grow with worker restarts.
"""

from __future__ import annotations

import os
from typing import Any

from api.server import ApiWorker
from api.settings import ServerSettings
from runtime import metrics_dir

# The master parses the API_* server variables through the API's own table (SettingsError on a
# bad value).
_server = ServerSettings.from_env(os.environ)
ApiWorker.configure(_server)
_created_dirs: list[str] = []

bind = _server.bind
workers = _server.workers
# gevent's worker, with a connection limit per client address and short idle keep-alives
# under pressure (api/server.py).
worker_class = "api.server.ApiWorker"
worker_connections = _server.worker_connections
timeout = _server.timeout_s
graceful_timeout = _server.graceful_timeout_s
keepalive = _server.keepalive_s
max_requests = _server.max_requests
max_requests_jitter = max_requests // 10
proc_name = "jobauth-api"
accesslog = _server.access_log
# Request lines of the access log never include bodies or Authorization headers.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
# Keep request heads small: tokens travel in headers, nothing else needs big ones.
limit_request_line = 4094
limit_request_field_size = 8190
# gunicorn 27's control socket defaults to one path per user, which two instances on one host
# would fight over: off unless a path is given.
control_socket = _server.control_socket
control_socket_disable = not control_socket


def on_starting(server: Any) -> None:
    """Point the metrics directory at an empty one before any worker imports prometheus-client."""
    created = metrics_dir.prepare(os.environ, prefix="api-metrics-")
    if created is not None:
        _created_dirs.append(created)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges and fold its counters into the archive files."""
    metrics_dir.process_died(worker.pid)


def on_exit(server: Any) -> None:
    """Remove the metrics directory if this config created it (a temporary one)."""
    for path in _created_dirs:
        metrics_dir.remove(path)
