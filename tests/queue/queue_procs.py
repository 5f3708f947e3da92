"""Entry points for the queue tests' child processes (spawned: each builds its own client)."""

from __future__ import annotations

from multiprocessing.synchronize import Barrier
from typing import Any

from queue_worker.connection import connect, database
from queue_worker.settings import QueueSettings
from queue_worker.store import JobStore


def _store(uri: str, db_name: str, lease_s: float) -> JobStore:
    settings = QueueSettings(
        mongodb_uri=uri, mongodb_database=db_name, lease_s=lease_s, heartbeat_s=1
    )
    return JobStore(database(connect(settings, app_name="test-child"), settings), settings)


def claim_until_empty(uri: str, db_name: str, owner: str, barrier: Barrier, out: Any) -> None:
    """Claim jobs (never completing them) until none is left; send back (job id, token) pairs."""
    store = _store(uri, db_name, lease_s=600)
    barrier.wait()
    claimed: list[tuple[str, str]] = []
    while (held := store.claim(owner)) is not None:
        claimed.append((held.job.id, held.token))
    out.put(claimed)


def enqueue_with_key(uri: str, db_name: str, key: str, barrier: Barrier, out: Any) -> None:
    """Enqueue one job with `key` right after all siblings are ready; send back its id."""
    store = _store(uri, db_name, lease_s=30)
    barrier.wait()
    out.put(store.enqueue("keyed", {"from": "process"}, idempotency_key=key).id)


def run_consumer(uri: str, db_name: str, owner: str, lease_s: float, concurrency: int) -> None:
    """Run a Consumer until SIGTERM; its tasks record each run in the `runs` collection."""
    import signal
    import time

    from queue_worker.consumer import Consumer
    from queue_worker.tasks import TaskContext, TaskRegistry

    settings = QueueSettings(
        mongodb_uri=uri, mongodb_database=db_name, lease_s=lease_s, heartbeat_s=lease_s / 3
    )
    store = JobStore(database(connect(settings, app_name=owner), settings), settings)
    registry = TaskRegistry()

    def record(payload: dict[str, Any], ctx: TaskContext) -> str:
        store.db["runs"].insert_one({"job_id": ctx.job_id, "owner": owner})
        return owner

    def hang(payload: dict[str, Any], ctx: TaskContext) -> None:
        store.db["runs"].insert_one({"job_id": ctx.job_id, "owner": owner})
        while True:
            time.sleep(0.05)

    registry.task("record")(record)
    registry.task("hang")(hang)
    consumer = Consumer(store, registry, settings, owner=owner, concurrency=concurrency)
    signal.signal(signal.SIGTERM, lambda signum, frame: consumer.request_stop())
    consumer.run()
