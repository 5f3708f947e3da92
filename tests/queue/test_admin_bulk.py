"""The operations the dashboard adds to the CLI's (queue_worker.admin, queue_worker.browse): run
now, delete a dead job, bulk retry/delete of a filter with a cap, and the capped, filtered,
searched listings. Each respects the state machine: a job that is not in the state an action
needs is refused or skipped, never changed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from queue_helpers import FakeClock, promote_all

from queue_worker import admin, browse
from queue_worker.browse import JobFilter
from queue_worker.errors import InvalidTransitionError
from queue_worker.job import Job, JobState
from queue_worker.store import JobStore


def make_dead(store: JobStore, n: int, *, queue: str = "default", task: str = "t") -> list[str]:
    ids = [store.enqueue(task, {"n": i}, queue=queue, max_attempts=1).id for i in range(n)]
    promote_all(store)
    for _ in ids:
        held = store.claim("owner-1", queues=[queue])
        assert held is not None
        assert store.fail(held, "boom", retryable=False) is JobState.DEAD
    return ids


def state_of(store: JobStore, job_id: str) -> JobState | None:
    job = store.get(job_id)
    return job.state if job else None


def test_run_now_makes_a_delayed_job_due_and_refuses_anything_else(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    """Run now moves a delayed job's run_at to now; a job already due or dead is refused."""
    later = job_store.enqueue("t", delay_s=3600)
    job = admin.run_now(job_store, later.id, now=fake_clock.now)
    assert job.run_at == fake_clock.now and job.state is JobState.PENDING
    with pytest.raises(InvalidTransitionError):
        admin.run_now(job_store, later.id, now=fake_clock.now)  # due already
    (dead,) = make_dead(job_store, 1)
    with pytest.raises(InvalidTransitionError):
        admin.run_now(job_store, dead, now=fake_clock.now)


def test_delete_removes_a_dead_job_and_frees_its_key_but_refuses_live_ones(
    job_store: JobStore,
) -> None:
    """Only a dead job can be deleted, and deleting it frees its idempotency key."""
    keyed = job_store.enqueue("t", idempotency_key="k-1", max_attempts=1)
    promote_all(job_store)
    held = job_store.claim("owner-1", queues=["default"])
    assert held is not None
    with pytest.raises(InvalidTransitionError):
        admin.delete_dead(job_store, keyed.id)  # running: refused
    job_store.fail(held, "boom", retryable=False)
    admin.delete_dead(job_store, keyed.id)
    assert job_store.get(keyed.id) is None
    assert job_store.enqueue("t", idempotency_key="k-1").id != keyed.id  # the key is free


def test_bulk_retry_changes_only_dead_jobs_matching_the_filter(job_store: JobStore) -> None:
    """A bulk retry revives the dead jobs its filter matches and touches nothing else."""
    mail = make_dead(job_store, 3, queue="mail")
    other = make_dead(job_store, 2, queue="default")
    pending = job_store.enqueue("t", queue="mail")
    query = JobFilter(queue="mail").query()
    assert len(admin.dead_ids(job_store, query)) == 3
    assert admin.bulk_dead(job_store, "retry", query) == 3
    assert [state_of(job_store, i) for i in mail] == [JobState.PENDING] * 3
    assert [state_of(job_store, i) for i in other] == [JobState.DEAD] * 2
    assert state_of(job_store, pending.id) is JobState.PENDING


def test_bulk_actions_stop_at_the_cap(job_store: JobStore) -> None:
    """A bulk action changes at most `cap` jobs."""
    make_dead(job_store, 5)
    assert admin.bulk_dead(job_store, "delete", {}, cap=3) == 3
    assert job_store.jobs.count_documents({"state": "dead"}) == 2


def test_parallel_bulk_retries_revive_each_job_once(job_store: JobStore) -> None:
    """Two operators press "retry all" at once: every job is revived by exactly one of them."""
    make_dead(job_store, 20)
    with ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(lambda _: admin.bulk_dead(job_store, "retry", {}), range(4)))
    assert sum(counts) == 20
    assert job_store.jobs.count_documents({"state": "pending"}) == 20


def test_a_bulk_delete_keeps_the_key_of_a_job_revived_meanwhile(
    job_store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the preview of ids and the delete, an operator retries one job: it is not
    deleted, and its idempotency key still points at it."""
    keyed = job_store.enqueue("t", idempotency_key="order-9", max_attempts=1)
    promote_all(job_store)
    held = job_store.claim("owner-1", queues=["default"])
    assert held is not None and job_store.fail(held, "boom", retryable=False) is JobState.DEAD
    (other,) = make_dead(job_store, 1)
    preview = admin.dead_ids

    def revived_meanwhile(*args: Any, **kwargs: Any) -> Any:
        ids = preview(*args, **kwargs)
        job_store.revive(keyed.id)
        return ids

    monkeypatch.setattr(admin, "dead_ids", revived_meanwhile)
    assert admin.bulk_dead(job_store, "delete", {}) == 1
    assert state_of(job_store, keyed.id) is JobState.PENDING and job_store.get(other) is None
    assert job_store.enqueue("t", idempotency_key="order-9").id == keyed.id


def test_unknown_bulk_actions_are_refused(job_store: JobStore) -> None:
    """Only retry and delete are bulk actions."""
    make_dead(job_store, 1)
    with pytest.raises(admin.RefusedError):
        admin.bulk_dead(job_store, "explode", {})


def test_search_finds_a_job_by_id_by_key_and_by_a_payload_field(job_store: JobStore) -> None:
    """A search matches an id, a key or payload.<field>=<value>, never an operator."""
    plain = job_store.enqueue("t", {"user": 42, "flag": True})
    keyed = job_store.enqueue("t", {"user": "ada"}, idempotency_key="order-7")

    def found(text: str) -> list[str]:
        return [job.id for job in browse.find_jobs(job_store, JobFilter(search=text))]

    assert found(plain.id) == [plain.id]
    assert found("order-7") == [keyed.id]
    assert found("payload.user=42") == [plain.id]
    assert found("payload.user=ada") == [keyed.id]
    assert found("payload.flag=true") == [plain.id]
    assert found("no-such-key") == []
    assert found("payload.$where=1") == []  # an operator name is only a field name here


def test_listings_filter_by_state_and_time_newest_first(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    """Listings filter by state, age and delay, newest first."""
    old = job_store.enqueue("t")
    fake_clock.advance(600)
    new = job_store.enqueue("t")
    later = job_store.enqueue("t", delay_s=3600)
    jobs: list[Job] = browse.find_jobs(job_store, JobFilter(state=JobState.PENDING))
    assert [j.id for j in jobs] == [later.id, new.id, old.id]
    since = JobFilter(since=fake_clock.now - timedelta(seconds=60))
    assert {j.id for j in browse.find_jobs(job_store, since)} == {new.id, later.id}
    delayed = JobFilter(state=JobState.PENDING, due_after=fake_clock.now)
    assert [j.id for j in browse.find_jobs(job_store, delayed)] == [later.id]


def test_counts_stop_at_the_cap(job_store: JobStore) -> None:
    """Counts stop at the cap and say they did."""
    job_store.enqueue_many([{"task": "t"}] * 7)
    assert browse.count_jobs(job_store, JobFilter(), cap=5) == (5, True)
    assert browse.count_jobs(job_store, JobFilter(), cap=10) == (7, False)
