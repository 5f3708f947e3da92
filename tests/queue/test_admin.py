"""Operator queries and commands (queue_worker.admin) against the real database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId
from clocks import T0, FakeClock
from pymongo.database import Database
from queue_helpers import live_count

from queue_worker import admin, browse
from queue_worker.browse import JobFilter
from queue_worker.errors import InvalidTransitionError, JobNotFoundError
from queue_worker.job import Job, JobState
from queue_worker.layout import BACKLOG
from queue_worker.settings import QueueSettings
from queue_worker.store import JobStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def store(db: Database[Any], clock: FakeClock) -> JobStore:
    store = JobStore(db, QueueSettings(), clock=clock)
    store.ensure_indexes()
    return store


def running(store: JobStore, task: str = "t", queue: str = "default") -> Any:
    store.enqueue(task, queue=queue)
    held = store.claim("owner-1", queues=[queue])
    assert held is not None
    return held


def dead(store: JobStore, task: str = "t", queue: str = "default") -> Job:
    held = running(store, task, queue)
    assert store.fail(held, "boom", retryable=False) is JobState.DEAD
    job = store.get(held.job.id)
    assert job is not None
    return job


def succeeded(store: JobStore, task: str = "t") -> Job:
    held = running(store, task)
    doc = store.succeed(held, {"ok": True})
    assert doc is not None
    store.archive([doc])
    job = store.get(held.job.id)
    assert job is not None and job.state is JobState.SUCCEEDED
    return job


def test_stats_count_every_state_in_both_collections(store: JobStore, clock: FakeClock) -> None:
    """stats counts pending, running, dead (jobs) and succeeded, cancelled (jobs_done) per queue."""
    succeeded(store)
    dead(store)
    running(store)
    admin.cancel(store, store.enqueue("t").id)
    store.enqueue("t")
    store.enqueue("t", queue="mail")
    result = admin.stats(store, clock.now).as_dict()["queues"]
    assert result["default"]["counts"] == {
        "pending": 1, "running": 1, "succeeded": 1, "dead": 1, "cancelled": 1,
    }  # fmt: skip
    assert result["mail"]["counts"]["pending"] == 1


def test_stats_age_the_oldest_due_job_per_queue(store: JobStore, clock: FakeClock) -> None:
    """The oldest due age counts from run_at of due pending jobs; future jobs do not count."""
    store.enqueue("t")
    clock.now = T0 + timedelta(seconds=30)
    store.enqueue("t")
    store.enqueue("t", queue="later", delay_s=3600)
    clock.now = T0 + timedelta(seconds=90)
    ages = admin.stats(store, clock.now).oldest_due_age_s
    assert ages == {"default": 90.0}


def test_stats_count_an_expired_lease_as_due_work(store: JobStore, clock: FakeClock) -> None:
    """A running job whose lease expired is due work, aged from its lease expiry."""
    held = running(store)
    assert held.job.lease_until is not None
    now = held.job.lease_until + timedelta(seconds=5)
    assert admin.stats(store, now).oldest_due_age_s == {"default": 5.0}


def test_list_filters_by_state_and_queue_newest_first(store: JobStore) -> None:
    """list returns jobs newest first, filtered by state and queue, across both collections."""
    first = succeeded(store)
    second = store.enqueue("t")
    third = store.enqueue("t", queue="mail")

    def ids(flt: JobFilter, limit: int = 50) -> list[str]:
        return [j.id for j in browse.find_jobs(store, flt, limit=limit)]

    assert ids(JobFilter()) == [third.id, second.id, first.id]
    assert ids(JobFilter(), limit=2) == [third.id, second.id]
    assert ids(JobFilter(state=JobState.SUCCEEDED)) == [first.id]
    assert ids(JobFilter(queue="mail")) == [third.id]
    assert ids(JobFilter(state=JobState.DEAD)) == []


def test_retry_revives_a_dead_job_with_fresh_attempts(store: JobStore) -> None:
    """retry sends a dead job back to pending with attempts reset."""
    job = dead(store)
    revived = admin.retry(store, job.id)
    assert (revived.state, revived.attempts, revived.dead_reason) == (JobState.PENDING, 0, None)


def test_retry_refuses_jobs_that_are_not_dead(store: JobStore) -> None:
    """retry of a pending job or an unknown id changes nothing and says why."""
    job = store.enqueue("t")
    with pytest.raises(InvalidTransitionError, match="pending"):
        admin.retry(store, job.id)
    with pytest.raises(JobNotFoundError):
        admin.retry(store, "0" * 24)
    with pytest.raises(JobNotFoundError):
        admin.retry(store, "not-an-id")


def test_retry_all_dead_revives_every_dead_job(store: JobStore) -> None:
    """retry_all_dead revives all dead jobs (optionally of one queue) and nothing else."""
    dead(store)
    dead(store)
    dead(store, queue="mail")
    pending = store.enqueue("t")
    assert admin.retry_all_dead(store, queue="mail") == 1
    assert admin.retry_all_dead(store) == 2
    assert admin.retry_all_dead(store) == 0
    assert live_count(store, {"state": "pending"}) == 4
    assert store.get(pending.id) is not None


def test_cancel_moves_a_pending_job_to_cancelled(store: JobStore) -> None:
    """cancel turns a pending job cancelled (archived) and refuses running or unknown jobs."""
    job = store.enqueue("t")
    assert admin.cancel(store, job.id).state is JobState.CANCELLED
    assert store.done.count_documents({"_id": ObjectId(job.id)}) == 1
    assert live_count(store, {"_id": ObjectId(job.id)}) == 0
    with pytest.raises(InvalidTransitionError, match="cancelled"):
        admin.cancel(store, job.id)
    held = running(store)
    with pytest.raises(InvalidTransitionError, match="running"):
        admin.cancel(store, held.job.id)
    with pytest.raises(JobNotFoundError):
        admin.cancel(store, "0" * 24)


def test_purge_deletes_only_old_jobs_of_the_given_finished_state(
    store: JobStore, clock: FakeClock
) -> None:
    """purge deletes finished jobs older than the cutoff; a dry run only counts them."""
    old = succeeded(store)
    clock.now = T0 + timedelta(hours=2)
    recent = succeeded(store)
    dead_job = dead(store)
    now = T0 + timedelta(hours=3)
    older = {"now": now, "older_than_s": 2 * 3600}
    assert admin.purge(store, JobState.SUCCEEDED, dry_run=True, **older) == 1
    assert store.get(old.id) is not None
    assert admin.purge(store, JobState.SUCCEEDED, **older) == 1
    assert store.get(old.id) is None and store.get(recent.id) is not None
    assert admin.purge(store, JobState.DEAD, now=now) == 1
    assert store.get(dead_job.id) is None


def test_purge_of_a_keyed_job_frees_its_idempotency_key(store: JobStore, clock: FakeClock) -> None:
    """After purging a finished keyed job, the same key makes a new job."""
    job = store.enqueue("t", idempotency_key="k1")
    admin.cancel(store, job.id)
    assert store.enqueue("t", idempotency_key="k1").id == job.id
    assert admin.purge(store, JobState.CANCELLED, now=clock.now) == 1
    assert store.enqueue("t", idempotency_key="k1").id != job.id


@pytest.mark.parametrize("state", [JobState.PENDING, JobState.RUNNING])
def test_purge_refuses_live_states(store: JobStore, clock: FakeClock, state: JobState) -> None:
    """purge refuses pending and running jobs and deletes nothing."""
    store.enqueue("t")
    with pytest.raises(admin.RefusedError, match="refusing"):
        admin.purge(store, state, now=clock.now)
    assert live_count(store) == 1


def test_list_orders_by_creation_time_not_object_id(store: JobStore, db: Database[Any]) -> None:
    """Newest first means by created_at: ObjectIds from different processes need not agree."""
    first = store.enqueue("t")
    second = store.enqueue("t")
    later = second.created_at + timedelta(seconds=1)
    db[BACKLOG].update_one({"_id": ObjectId(first.id)}, {"$set": {"created_at": later}})
    listed = browse.find_jobs(store, JobFilter(state=JobState.PENDING))
    assert [job.id for job in listed] == [first.id, second.id]
