"""A database outage is not a hang: consumers blocked on an unreachable server are left alone."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import localdb
import pytest
from pymongo import MongoClient
from supervisor_harness import FAST_ENV, Supervisor
from waiting import wait_until

from queue_worker.job import JobState
from queue_worker.settings import QueueSettings
from queue_worker.store import JobStore


@pytest.mark.slow  # the master judges liveness on the real clock: the outage must outlast it
def test_consumers_outlive_a_database_outage_longer_than_the_hang_timeout(
    start_supervisor: Callable[..., Supervisor], own_server: localdb.LocalDB, tmp_path: Path
) -> None:
    """With the server down for 3x the hang timeout, no consumer is aborted and no crash is
    recorded; the running job finishes once the server is back."""
    uri = own_server.uri()
    env = {"MONGODB_URI": uri, "MONGODB_DATABASE": "outage"}
    settings = QueueSettings.from_env({**FAST_ENV, **env})
    client: MongoClient[dict[str, object]] = MongoClient(uri, tz_aware=True)
    store = JobStore(client["outage"], settings)  # type: ignore[arg-type]
    restarted: localdb.LocalDB | None = None
    try:
        sup = start_supervisor("--workers", "1", "--concurrency", "1", env=env)
        consumer = sup.wait_children(1)
        job = store.enqueue("bench.sleep", {"ms": 9000})
        first = wait_until(lambda: (j := store.get(job.id)) and j.lease_until and j, 15, "claim")
        # Durable enough: wait for one heartbeat after the claim before pulling the plug.
        wait_until(lambda: store.get(job.id).lease_until > first.lease_until, 15, "heartbeat")  # type: ignore[union-attr,operator]
        own_server.kill()
        down_until = time.monotonic() + 6  # hang timeout is 2 s
        while time.monotonic() < down_until:
            assert sup.children() == consumer, sup.output()
            time.sleep(0.2)
        restarted = localdb.start(
            port=own_server.port, data_dir=own_server.data_dir, log_path=tmp_path / "db2.log"
        )
        done = wait_until(
            lambda: (j := store.get(job.id)) and j.state is JobState.SUCCEEDED and j,
            30,
            f"job to succeed\n{sup.output()}",
        )
        assert done.crashes == 0
        assert "stopped reporting" not in sup.output()
        sup.signal(signal.SIGTERM)
        assert sup.wait(15) == 0
    finally:
        client.close()
        if restarted is not None:
            restarted.stop()


@pytest.mark.slow  # the master judges liveness on the real clock: the stall must outlast it
def test_a_stalled_database_neither_kills_consumers_nor_blames_their_jobs(
    start_supervisor: Callable[..., Supervisor], own_server: localdb.LocalDB
) -> None:
    """With the database frozen (SIGSTOP: it accepts nothing, refuses nothing) for 3x the hang
    timeout, the consumer is left alone: its loop waits inside a command with a deadline, and
    its liveness says so. After SIGCONT the running job finishes with no crash recorded."""
    uri = own_server.uri()
    env = {"MONGODB_URI": uri, "MONGODB_DATABASE": "stall", "QUEUE_DB_TIMEOUT_S": "3"}
    settings = QueueSettings.from_env({**FAST_ENV, **env})
    client: MongoClient[dict[str, object]] = MongoClient(uri, tz_aware=True)
    store = JobStore(client["stall"], settings)  # type: ignore[arg-type]
    try:
        sup = start_supervisor("--workers", "1", "--concurrency", "2", env=env)
        consumer = sup.wait_children(1)
        job = store.enqueue("bench.sleep", {"ms": 3000})
        wait_until(lambda: (j := store.get(job.id)) and j.state is JobState.RUNNING, 15, "claim")
        own_server.process.send_signal(signal.SIGSTOP)
        try:
            frozen_until = time.monotonic() + 6  # hang timeout is 2 s
            while time.monotonic() < frozen_until:
                assert sup.children() == consumer, sup.output()
                time.sleep(0.2)
        finally:
            own_server.process.send_signal(signal.SIGCONT)
        done = wait_until(
            lambda: (j := store.get(job.id)) and j.state is JobState.SUCCEEDED and j,
            60,
            f"job to succeed\n{sup.output()}",
        )
        assert done.crashes == 0
        assert "stopped reporting" not in sup.output()
        sup.signal(signal.SIGTERM)
        assert sup.wait(30) == 0
    finally:
        client.close()
