"""The metrics exporter: a supervised child serving Prometheus text on --metrics-port.

It aggregates the mmap files every process writes in PROMETHEUS_MULTIPROC_DIR (the children's
queue counters, the master's supervisor metrics) and, at scrape time, reads queue depth from the
database. It is the only long-lived process besides the consumers that holds a database client,
and it lives in its own child so the master stays free of both HTTP and database.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from datetime import UTC, datetime

import setproctitle
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from queue_worker.store import JobStore
from supervisor.bootstrap import open_store, queue_settings
from supervisor.errors import ExitCode
from supervisor.liveness import LivenessLink
from supervisor.metrics import QueueStats, QueueStatsCollector
from supervisor.settings import SupervisorSettings

log = logging.getLogger("supervisor.exporter")
LOOP_S = 0.5


def read_queue_stats(store: JobStore, now: datetime | None = None) -> QueueStats:
    """Count jobs per (queue, state) in both collections and find each queue's oldest due job."""
    now = now or datetime.now(UTC)
    depth: dict[tuple[str, str], int] = {}
    group = {"$group": {"_id": {"queue": "$queue", "state": "$state"}, "n": {"$sum": 1}}}
    for collection in (store.jobs, store.done):
        for row in collection.aggregate([group], maxTimeMS=5000):
            key = (str(row["_id"]["queue"]), str(row["_id"]["state"]))
            depth[key] = depth.get(key, 0) + int(row["n"])
    oldest: dict[str, float] = {}
    pipeline: list[dict[str, object]] = [
        {"$match": {"state": "pending", "run_at": {"$lte": now}}},
        {"$group": {"_id": "$queue", "oldest": {"$min": "$run_at"}}},
    ]
    for row in store.jobs.aggregate(pipeline, maxTimeMS=5000):
        oldest[str(row["_id"])] = max(0.0, (now - row["oldest"]).total_seconds())
    for queue, _state in depth:
        oldest.setdefault(queue, 0.0)
    return QueueStats(depth=depth, oldest_due_age_s=oldest)


def run_exporter(settings: SupervisorSettings, liveness: LivenessLink) -> int:
    """Serve metrics until told to stop (TERM/QUIT) or orphaned; return the exit code."""
    setproctitle.setproctitle(f"supervisor: metrics exporter :{settings.metrics_port}")
    stop: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGQUIT):
        signal.signal(signum, lambda s, f: stop.append(s))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master decides; Ctrl-C reaches it too
    master = os.getppid()
    client, store = open_store(queue_settings(), "supervisor-exporter", timeout_ms=2000, pool=2)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(QueueStatsCollector(lambda: read_queue_stats(store)))
    try:
        server, _thread = start_http_server(
            settings.metrics_port, addr=settings.metrics_host, registry=registry
        )
    except OSError as exc:
        client.close()
        note = f"cannot listen on {settings.metrics_host}:{settings.metrics_port}: {exc}"
        liveness.leave_note(note)
        return ExitCode.BOOT_FAILURE
    liveness.mark_ready()
    while not stop and os.getppid() == master:
        liveness.notify()
        time.sleep(LOOP_S)
    server.shutdown()
    client.close()
    return ExitCode.OK
