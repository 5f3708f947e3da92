"""Entry points for the queue tests' child processes (spawned: each builds its own client)."""

from __future__ import annotations

from multiprocessing.synchronize import Barrier
from typing import Any

from queue_worker.settings import QueueSettings
from queue_worker.store import JobStore, connect, database


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
