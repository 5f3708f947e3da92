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

import pymongo
import setproctitle
from prometheus_client import CollectorRegistry, start_http_server
from pymongo.errors import PyMongoError

from queue_worker import admin
from queue_worker.store import JobStore
from runtime import metrics_dir
from runtime.metrics_files import LockedMultiProcessCollector
from runtime.process_tree import ProcessTreeCollector
from supervisor.bootstrap import open_store, queue_settings
from supervisor.errors import ExitCode
from supervisor.liveness import LivenessLink
from supervisor.metrics import QueueStats, QueueStatsCollector, StatsUnavailable
from supervisor.settings import SupervisorSettings

log = logging.getLogger("supervisor.exporter")
LOOP_S = 0.5
STATS_TIMEOUT_S = 2.0


def read_queue_stats(store: JobStore) -> QueueStats:
    """Read depth per (queue, state) and the oldest due job's age per queue, now; a driver
    error (the database did not answer) is StatsUnavailable."""
    try:
        # Well inside a scrape's timeout: an unreachable database is reported as
        # queue_stats_up 0 by this scrape, not as a failed scrape.
        with pymongo.timeout(STATS_TIMEOUT_S):
            raw = admin.stats(store, datetime.now(UTC))
    except PyMongoError as exc:
        raise StatsUnavailable(type(exc).__name__) from exc
    depth = {
        (queue, state): count
        for queue, states in raw.counts.items()
        for state, count in states.items()
    }
    oldest = {queue: 0.0 for queue in raw.counts} | raw.oldest_due_age_s
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
    # Locked: a consumer's files being folded into the archive are never read twice.
    registry.register(LockedMultiProcessCollector(metrics_dir.require()))
    registry.register(QueueStatsCollector(lambda: read_queue_stats(store)))
    registry.register(ProcessTreeCollector(master))
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
