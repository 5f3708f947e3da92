"""Admin transitions in the store: cancel (pending -> cancelled) and revive (dead -> pending)."""

from __future__ import annotations

from bson import ObjectId
from queue_helpers import FakeClock, metric

from queue_worker.job import TRANSITIONS, JobState, Transition
from queue_worker.store import JobStore


def test_transition_table_is_exactly_the_issue_list() -> None:
    """The table allows exactly the transitions the issue names, nothing else."""
    pairs = {(a.value, b.value) for a, b in TRANSITIONS.values()}
    assert pairs == {
        ("pending", "running"), ("running", "succeeded"), ("running", "pending"),
        ("running", "dead"), ("pending", "cancelled"), ("dead", "pending"),
    }  # fmt: skip


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


def test_every_state_change_goes_through_a_named_transition() -> None:
    """Each Transition maps to a (from, to) pair of real states."""
    for name in Transition:
        before, after = TRANSITIONS[name]
        assert isinstance(before, JobState) and isinstance(after, JobState)
