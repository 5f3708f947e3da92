"""Real processes and real signals: consumers in several processes, a SIGKILLed consumer whose
job is rescued, and a SIGKILLed database server that loses no acknowledged enqueue."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import localdb
import pytest
import queue_procs
from pymongo.database import Database
from queue_helpers import wait_until

from queue_worker.connection import connect, database
from queue_worker.consumer import Consumer
from queue_worker.job import JobState
from queue_worker.layout import BACKLOG
from queue_worker.settings import QueueSettings
from queue_worker.store import JobStore
from queue_worker.tasks import TaskRegistry

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def children() -> Iterator[list[BaseProcess]]:
    """Processes a test starts; any still alive at the end are killed."""
    procs: list[BaseProcess] = []
    yield procs
    for proc in procs:
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=10)


def start_consumer(
    children: list[BaseProcess],
    uri: str,
    db_name: str,
    owner: str,
    lease_s: float = 30.0,
    concurrency: int = 2,
) -> BaseProcess:
    proc = SPAWN.Process(
        target=queue_procs.run_consumer, args=(uri, db_name, owner, lease_s, concurrency)
    )
    proc.start()
    children.append(proc)
    return proc


def test_three_consumer_processes_run_every_job_exactly_once(
    live_store: JobStore, mongo_uri: str, db_name: str, children: list[BaseProcess]
) -> None:
    """Three consumer processes draining one queue run each job once and archive all of them;
    SIGTERM stops each cleanly."""
    jobs = live_store.enqueue_many([{"task": "record"} for _ in range(45)])
    procs = [start_consumer(children, mongo_uri, db_name, f"proc:{i}") for i in range(3)]
    wait_until(lambda: live_store.done.count_documents({}) == 45, timeout_s=120, what="drain")
    for proc in procs:
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGTERM)
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    runs = list(live_store.db["runs"].find())
    assert sorted(r["job_id"] for r in runs) == sorted(j.id for j in jobs)
    assert live_store.jobs.count_documents({}) + live_store.backlog.count_documents({}) == 0
    assert live_store.done.count_documents({"state": "succeeded", "attempts": 1}) == 45


def test_a_sigkilled_consumers_job_is_rescued_after_its_lease_expires(
    live_store: JobStore,
    queue_settings: QueueSettings,
    mongo_uri: str,
    db_name: str,
    children: list[BaseProcess],
) -> None:
    """A consumer killed with SIGKILL mid-job stops heartbeating; once the 1 s lease expires
    another consumer claims the job as a rescue and completes it."""
    job = live_store.enqueue("hang")
    victim = start_consumer(children, mongo_uri, db_name, "victim:1", lease_s=1.0)
    wait_until(lambda: live_store.db["runs"].count_documents({}) == 1, timeout_s=30, what="start")
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(timeout=10)
    assert victim.exitcode == -signal.SIGKILL
    running = live_store.get(job.id)
    assert running is not None and running.lease_owner == "victim:1"
    registry = TaskRegistry()
    registry.task("hang")(lambda payload, ctx: "rescued")
    settings = QueueSettings(
        mongodb_uri=mongo_uri, mongodb_database=db_name, lease_s=1.0, heartbeat_s=0.3
    )
    store = JobStore(live_store.db, settings)
    rescuer = Consumer(store, registry, settings, owner="rescuer:1")

    def rescued() -> bool:
        rescuer.run_once(store.clock())
        state = store.get(job.id)
        return state is not None and state.state is JobState.SUCCEEDED

    wait_until(rescued, timeout_s=15, what="rescue")
    done = store.get(job.id)
    assert done is not None
    assert (done.rescues, done.attempts, done.lease_owner, done.result) == (
        1,
        2,
        "rescuer:1",
        "rescued",
    )


def test_journaled_enqueues_survive_a_killed_database_server(tmp_path: Path) -> None:
    """Every enqueue acknowledged before the server is SIGKILLed is there after a restart."""
    data_dir = tmp_path / "data"
    server = localdb.start(data_dir=data_dir, log_path=tmp_path / "first.log")
    try:
        settings = QueueSettings(mongodb_uri=server.uri(), mongodb_database="durability")
        client = connect(settings, app_name="durability")
        store = JobStore(database(client, settings), settings)
        store.ensure_indexes()
        ids = [store.enqueue("t", {"i": i}).id for i in range(150)]
        server.kill()  # no shutdown: whatever was not on disk is gone
        client.close()
    finally:
        server.kill()
    restarted = localdb.start(data_dir=data_dir, log_path=tmp_path / "second.log")
    try:
        settings = QueueSettings(mongodb_uri=restarted.uri(), mongodb_database="durability")
        client = connect(settings, app_name="durability")
        db: Database[Any] = database(client, settings)
        stored = db[BACKLOG].find({}, {"_id": 1})
        assert sorted(str(d["_id"]) for d in stored) == sorted(ids)
        client.close()
    finally:
        restarted.stop()
