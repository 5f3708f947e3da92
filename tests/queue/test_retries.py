"""Retry policy: exponential backoff with equal jitter, dead after max attempts or non-retryable."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from bson import ObjectId
from queue_helpers import FakeClock, metric

from queue_worker.job import DeadReason, JobState
from queue_worker.retries import backoff_s
from queue_worker.store import JobStore


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (9, 60.0), (40, 60.0)]
)
def test_backoff_grows_exponentially_with_equal_jitter_up_to_the_cap(
    attempt: int, ceiling: float
) -> None:
    """The delay after attempt n lies in [c/2, c] with c = min(cap, base * 2^(n-1))."""
    rng = random.Random(attempt)
    delays = [backoff_s(attempt, base_s=1.0, cap_s=60.0, rng=rng) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 100  # jittered, not a fixed schedule


def test_failed_attempts_back_off_then_go_dead_when_exhausted(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    """Each failure sets pending with a later run_at; the last allowed attempt's failure is dead."""
    job = job_store.enqueue("t.exhaust", max_attempts=3)
    failed_before = metric("queue_jobs_failed_total", queue="default", task="t.exhaust")
    dead_before = metric(
        "queue_jobs_dead_total", queue="default", task="t.exhaust", reason="exhausted"
    )
    for attempt in (1, 2):
        held = job_store.claim("w")
        assert held is not None and held.job.attempts == attempt
        assert job_store.fail(held, ValueError(f"boom {attempt}")) is JobState.PENDING
        after = job_store.get(job.id)
        assert after is not None and after.last_error == f"ValueError: boom {attempt}"
        delay = (after.run_at - fake_clock.now).total_seconds()
        assert 2 ** (attempt - 1) / 2 <= delay <= 2 ** (attempt - 1) + 0.001
        assert job_store.claim("w") is None  # not due during the backoff
        fake_clock.advance(delay)
    held = job_store.claim("w")
    assert held is not None
    assert job_store.fail(held, "final") is JobState.DEAD
    final = job_store.get(job.id)
    assert final is not None and final.state is JobState.DEAD
    assert (final.dead_reason, final.attempts) == (DeadReason.EXHAUSTED, 3)
    assert final.finished_at == fake_clock.now
    assert metric("queue_jobs_failed_total", queue="default", task="t.exhaust") == failed_before + 2
    assert (
        metric("queue_jobs_dead_total", queue="default", task="t.exhaust", reason="exhausted")
        == dead_before + 1
    )


def test_non_retryable_failure_goes_dead_at_once(job_store: JobStore) -> None:
    """A non-retryable failure buries the job on its first attempt."""
    job = job_store.enqueue("t.nonretry", max_attempts=5)
    held = job_store.claim("w")
    assert held is not None
    assert job_store.fail(held, "bad input", retryable=False) is JobState.DEAD
    after = job_store.get(job.id)
    assert after is not None and after.dead_reason is DeadReason.NON_RETRYABLE
    assert after.attempts == 1


def test_backoff_respects_the_configured_cap(job_store: JobStore, fake_clock: FakeClock) -> None:
    """With many attempts left, the delay never exceeds backoff_cap_s."""
    job = job_store.enqueue("t", max_attempts=50)
    job_store.backlog.update_one({"task": "t"}, {"$set": {"attempts": 30}})
    held = job_store.claim("w")
    assert held is not None
    job_store.fail(held, "again")
    after = job_store.get(job.id)
    assert after is not None
    assert timedelta(seconds=30) <= after.run_at - fake_clock.now <= timedelta(seconds=60)


def test_a_raised_error_keeps_its_traceback_and_the_next_failure_replaces_it(
    job_store: JobStore,
) -> None:
    """The dashboard shows the last attempt's traceback: the innermost frames, bounded."""
    job = job_store.enqueue("t.trace", max_attempts=2)

    def handler() -> None:
        raise KeyError("missing-field")

    held = job_store.claim("w")
    assert held is not None
    try:
        handler()
    except KeyError as exc:
        job_store.fail(held, exc)
    after = job_store.get(job.id)
    assert after is not None and after.last_traceback is not None
    assert (
        "in handler" in after.last_traceback and "KeyError: 'missing-field'" in after.last_traceback
    )
    job_store.jobs.update_one({"_id": ObjectId(job.id)}, {"$set": {"run_at": after.created_at}})
    held = job_store.claim("w")
    assert held is not None
    job_store.fail(held, "lease expired during the last attempt")
    final = job_store.get(job.id)
    assert final is not None and final.last_traceback is None
