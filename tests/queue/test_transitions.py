"""Admin transitions in the store: cancel (pending -> cancelled) and revive (dead -> pending)."""

from __future__ import annotations

from collections.abc import Callable

from bson import ObjectId
from queue_helpers import FakeClock, metric

from queue_worker.job import TRANSITIONS, JobState
from queue_worker.layout import BACKLOG, DONE, JOBS
from queue_worker.lease import Lease
from queue_worker.store import JobStore


def _job_in(store: JobStore, clock: FakeClock, state: JobState) -> tuple[str, Lease | None]:
    """Enqueue a job and bring it to `state` through the store; return its id and lease."""
    job = store.enqueue("t", max_attempts=1)
    if state is JobState.PENDING:
        return job.id, None
    held = store.claim("w", now=clock.now)
    assert held is not None
    if state is JobState.SUCCEEDED:
        store.succeed(held, "ok")
    elif state is JobState.DEAD:
        store.fail(held, "boom")
    elif state is JobState.CANCELLED:
        store.release(held)
        store.cancel(job.id)
    return job.id, held


def test_no_store_operation_changes_a_state_the_table_does_not_allow(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    """Apply every state-changing operation to a job in every state; each change observed is a
    (from, to) pair of job.TRANSITIONS, and every pair of the table is observed at least once."""
    allowed = set(TRANSITIONS.values())
    operations: dict[str, Callable[[str, Lease | None], object]] = {
        "claim": lambda job_id, held: job_store.claim("other", now=fake_clock.now),
        "succeed": lambda job_id, held: held and job_store.succeed(held, 1),
        "fail": lambda job_id, held: held and job_store.fail(held, "x"),
        "release": lambda job_id, held: held and job_store.release(held),
        "cancel": lambda job_id, held: job_store.cancel(job_id),
        "revive": lambda job_id, held: job_store.revive(job_id),
        "expire": lambda job_id, held: held and job_store.expire(held, reason="x"),
    }
    observed: set[tuple[JobState, JobState]] = set()
    for state in JobState:
        for name, operation in operations.items():
            job_store.db.drop_collection(JOBS)
            job_store.db.drop_collection(BACKLOG)
            job_store.db.drop_collection(DONE)
            job_id, held = _job_in(job_store, fake_clock, state)
            before = job_store.get(job_id)
            assert before is not None and before.state is state, (state, name)
            operation(job_id, held)
            after = job_store.get(job_id)
            assert after is not None
            if after.state is not before.state:
                change = (before.state, after.state)
                assert change in allowed, f"{name} moved a {state} job to {after.state}"
                observed.add(change)
    assert observed == allowed


def test_cancel_moves_a_pending_job_to_cancelled_and_archives_it(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    """A cancelled pending job is moved to jobs_done, and get() still finds it."""
    job = job_store.enqueue("t.cancel")
    before = metric("queue_jobs_cancelled_total", queue="default", task="t.cancel")
    cancelled = job_store.cancel(job.id)
    assert cancelled is not None and cancelled.state is JobState.CANCELLED
    assert cancelled.finished_at == fake_clock.now
    assert job_store.jobs.count_documents({}) == 0
    assert job_store.done.count_documents({"_id": ObjectId(job.id), "state": "cancelled"}) == 1
    got = job_store.get(job.id)
    assert got is not None and got.state is JobState.CANCELLED
    assert metric("queue_jobs_cancelled_total", queue="default", task="t.cancel") == before + 1


def test_cancel_refuses_running_finished_unknown_and_malformed(job_store: JobStore) -> None:
    """Only a pending job can be cancelled; anything else answers None and changes nothing."""
    job_store.enqueue("t")
    held = job_store.claim("w")
    assert held is not None
    assert job_store.cancel(held.job.id) is None
    assert job_store.cancel(str(ObjectId())) is None
    assert job_store.cancel("zzz") is None
    running = job_store.get(held.job.id)
    assert running is not None and running.state is JobState.RUNNING


def test_revive_sends_a_dead_job_back_with_fresh_attempts(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    """A dead job revived is pending, due now, with attempts reset and no dead reason."""
    job = job_store.enqueue("t", max_attempts=1)
    held = job_store.claim("w")
    assert held is not None
    job_store.fail(held, "boom")
    fake_clock.advance(100)
    revived = job_store.revive(job.id)
    assert revived is not None and revived.state is JobState.PENDING
    assert (revived.attempts, revived.dead_reason, revived.finished_at) == (0, None, None)
    assert revived.run_at == fake_clock.now
    assert job_store.revive(job.id) is None  # no longer dead
    assert job_store.claim("w") is not None
