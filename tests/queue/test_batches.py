"""Claims and acks in batches: k jobs in two round trips without contention, each with its own
lease token; racing claimers never share a job; a lost lease in a bulk ack is still found."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient, monitoring
from queue_helpers import T0, metric

from queue_worker.job import JobState
from queue_worker.settings import QueueSettings
from queue_worker.store import JobStore


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

    def failed(self, event: monitoring.CommandFailedEvent) -> None: ...


@pytest.fixture
def counted(
    queue_settings: QueueSettings, job_store: JobStore
) -> Iterator[tuple[JobStore, Commands]]:
    """A second store on the same database whose client records every command it sends."""
    listener = Commands()
    client: MongoClient[dict[str, Any]] = MongoClient(
        queue_settings.mongodb_uri, tz_aware=True, event_listeners=[listener]
    )
    yield JobStore(client[job_store.db.name], queue_settings, clock=job_store.clock), listener
    client.close()


def test_a_batch_claim_takes_k_jobs_in_priority_order_in_two_round_trips(
    job_store: JobStore, counted: tuple[JobStore, Commands]
) -> None:
    low = [job_store.enqueue("t", priority=0, idempotency_key=f"low{i}") for i in range(3)]
    high = job_store.enqueue("t", priority=5, idempotency_key="high")
    store, commands = counted
    leases = store.claim_many("w:1", limit=3, now=T0)
    assert commands.names == ["find", "update"]
    assert [held.job.id for held in leases] == [high.id, low[0].id, low[1].id]
    assert len({held.token for held in leases}) == 3
    for held in leases:
        doc = job_store.jobs.find_one({"_id": ObjectId(held.job.id)})
        assert doc is not None and doc["state"] == "running" and doc["lease_token"] == held.token
        assert doc["attempts"] == held.job.attempts == 1 and held.job.state is JobState.RUNNING


def test_racing_batch_claimers_never_share_a_job(job_store: JobStore) -> None:
    jobs = [job_store.enqueue("t", idempotency_key=f"k{i}") for i in range(40)]
    with ThreadPoolExecutor(8) as pool:
        batches = list(
            pool.map(lambda n: job_store.claim_many(f"w:{n}", limit=4, now=T0), range(8))
        )
    claimed = [held.job.id for batch in batches for held in batch]
    assert len(claimed) == len(set(claimed)) > 4  # a claimer that lost them all tried again
    leftover = job_store.claim_many("w:last", limit=40, now=T0)
    assert sorted(claimed + [h.job.id for h in leftover]) == sorted(j.id for j in jobs)
    for batch in batches:
        for held in batch:  # each holder's token is the one in the document
            doc = job_store.jobs.find_one({"_id": ObjectId(held.job.id)})
            assert doc is not None and doc["lease_token"] == held.token


def test_a_bulk_ack_finds_the_one_lost_lease(job_store: JobStore) -> None:
    for i in range(3):
        job_store.enqueue("t", idempotency_key=f"k{i}")
    leases = job_store.claim_many("w:1", limit=3, now=T0)
    stolen = leases[1]
    job_store.jobs.update_one({"_id": ObjectId(stolen.job.id)}, {"$set": {"lease_token": "x"}})
    lost = metric("queue_leases_lost_total", queue="default", task="t")
    finals = job_store.succeed_many([(held, {"n": i}) for i, held in enumerate(leases)], now=T0)
    assert [f is not None for f in finals] == [True, False, True]
    assert metric("queue_leases_lost_total", queue="default", task="t") == lost + 1
    states = {str(d["_id"]): d["state"] for d in job_store.jobs.find()}
    assert states[stolen.job.id] == "running"
    assert states[leases[0].job.id] == states[leases[2].job.id] == "succeeded"


def test_suspects_are_never_batched(job_store: JobStore) -> None:
    job_store.enqueue("t", idempotency_key="plain")
    suspect = job_store.enqueue("t", idempotency_key="suspect", priority=9)
    job_store.jobs.update_one({"_id": ObjectId(suspect.id)}, {"$set": {"crashes": 1}})
    leases = job_store.claim_many("w:1", limit=4, now=T0)
    assert [held.job.idempotency_key for held in leases] == ["plain"]
