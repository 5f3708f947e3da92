"""Smoke: the supervisor starts consumers that run jobs, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import localdb
import psutil  # type: ignore[import-untyped]
from supervisor_harness import Supervisor, scrape
from waiting import wait_until

from queue_worker.job import JobState
from queue_worker.store import JobStore


def test_consumers_run_jobs_and_sigterm_exits_zero(
    start_supervisor: Callable[..., Supervisor], store: JobStore
) -> None:
    """Jobs enqueued before start all succeed; SIGTERM then exits 0."""
    jobs = [store.enqueue("bench.noop") for _ in range(5)]
    sup = start_supervisor("--workers", "2", "--concurrency", "2")
    sup.wait_children(2)
    wait_until(
        lambda: all((j2 := store.get(j.id)) and j2.state is JobState.SUCCEEDED for j in jobs),
        20,
        "jobs to succeed",
    )
    sup.signal(signal.SIGTERM)
    assert sup.wait(15) == 0, sup.output()


def test_master_holds_no_database_connection_while_children_run(
    start_supervisor: Callable[..., Supervisor], store: JobStore, mongo_uri: str
) -> None:
    """Fork hygiene: the master has no TCP connection to the database; its children do."""
    port = int(mongo_uri.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    sup = start_supervisor("--workers", "2")
    children = sup.wait_children(2)

    def db_connections(pid: int) -> int:
        conns = psutil.Process(pid).net_connections(kind="tcp")
        return sum(1 for c in conns if c.raddr and c.raddr.port == port)

    wait_until(lambda: all(db_connections(pid) for pid in children), 10, "children connected")
    assert db_connections(sup.pid) == 0


def test_dead_exporter_is_respawned(start_supervisor: Callable[..., Supervisor]) -> None:
    """The metrics exporter is supervised like a consumer: killed, it comes back."""
    port = localdb.free_port()
    sup = start_supervisor("--workers", "1", "--metrics-port", str(port))
    first = wait_until(lambda: sup.children("metrics exporter"), 15, "the exporter")[0]
    os.kill(first, signal.SIGKILL)
    wait_until(
        lambda: (e := sup.children("metrics exporter")) and first not in e, 10, "a new exporter"
    )
    wait_until(lambda: _scrape_ok(port), 10, "metrics served again")


def _scrape_ok(port: int) -> bool:
    try:
        return "supervisor_consumers_alive" in str(scrape(port))
    except OSError:
        return False
