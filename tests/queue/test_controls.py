"""Operator controls consumers obey (queue_worker.controls): a paused queue is claimed by no
consumer until it resumes; consumers register, heartbeat what they run, and leave."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from queue_helpers import T0, FakeClock

from queue_worker.consumer import Consumer
from queue_worker.controls import CONTROLS_EVERY_S, Controls
from queue_worker.job import JobState
from queue_worker.store import JobStore
from queue_worker.tasks import TaskRegistry


def registry() -> TaskRegistry:
    reg = TaskRegistry()
    reg.task("quick")(lambda payload, ctx: {"n": payload.get("n")})
    return reg


def consumer(store: JobStore, clock: FakeClock, **kwargs: Any) -> Consumer:
    return Consumer(
        store, registry(), store.settings, owner="host:1", clock=clock,
        queues=["default", "mail"], concurrency=2, **kwargs,
    )  # fmt: skip


def state_of(store: JobStore, job_id: str) -> JobState | None:
    job = store.get(job_id)
    return job.state if job else None


def test_pause_and_resume_are_idempotent_and_report_whether_they_changed_anything(
    job_store: JobStore,
) -> None:
    """Pausing twice or resuming twice changes nothing the second time, and says so."""
    controls = Controls(job_store.db)
    assert controls.pause("mail", by="ops@example.com", now=T0) is True
    assert controls.pause("mail", by="ops@example.com", now=T0) is False
    assert controls.paused() == {"mail"}
    assert controls.paused(["default"]) == set()
    assert controls.resume("mail") is True
    assert controls.resume("mail") is False
    assert controls.paused() == set()


def test_a_paused_queue_is_not_claimed_and_its_jobs_run_after_resume(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    """Pausing `mail` leaves its job pending while `default` keeps running; within
    CONTROLS_EVERY_S of a resume the consumer claims it."""
    controls = Controls(job_store.db)
    controls.pause("mail", by="ops@example.com", now=fake_clock.now)
    held_back = job_store.enqueue("quick", {"n": 1}, queue="mail")
    runs = job_store.enqueue("quick", {"n": 2})
    worker = consumer(job_store, fake_clock)
    assert worker.run_once(fake_clock.now) == 1  # only the default queue's job
    assert state_of(job_store, held_back.id) is JobState.PENDING
    assert worker.run_once(fake_clock.advance(CONTROLS_EVERY_S + 1)) == 0
    assert state_of(job_store, held_back.id) is JobState.PENDING

    controls.resume("mail")
    assert worker.run_once(fake_clock.advance(0.1)) == 0  # not re-read yet
    assert worker.run_once(fake_clock.advance(CONTROLS_EVERY_S)) == 1
    worker.drain(timeout_s=5)
    assert state_of(job_store, held_back.id) is JobState.SUCCEEDED
    assert state_of(job_store, runs.id) is JobState.SUCCEEDED


def test_a_consumer_with_every_queue_paused_claims_nothing(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    """A consumer whose every queue is paused claims nothing, however much is due."""
    controls = Controls(job_store.db)
    for queue in ("default", "mail"):
        controls.pause(queue, by="ops@example.com", now=fake_clock.now)
        job_store.enqueue("quick", {}, queue=queue)
    worker = consumer(job_store, fake_clock)
    assert worker.run_once(fake_clock.now) == 0
    assert job_store.jobs.count_documents({"state": "running"}) == 0


def test_a_registered_consumer_heartbeats_what_it_runs_and_leaves_on_a_clean_exit(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    """A supervised consumer reports its queues, slots and RSS, and leaves when it drains."""
    controls = Controls(job_store.db)
    worker = consumer(job_store, fake_clock, register=True)
    worker.run_once(fake_clock.now)
    (entry,) = controls.alive(since=fake_clock.now - timedelta(seconds=1))
    assert entry["_id"] == "host:1" and entry["queues"] == ["default", "mail"]
    assert entry["concurrency"] == 2 and entry["running"] == [] and entry["rss_mb"] > 0
    assert controls.alive(since=fake_clock.now + timedelta(seconds=1)) == []

    worker.drain(timeout_s=5)
    assert job_store.db["workers"].count_documents({}) == 0


def test_an_unregistered_consumer_writes_no_heartbeat(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    """Only consumers asked to register (supervised or `work`) write to the registry."""
    consumer(job_store, fake_clock).run_once(fake_clock.now)
    assert job_store.db["workers"].count_documents({}) == 0


def test_stale_heartbeats_expire_by_a_ttl_index(job_store: JobStore) -> None:
    """A consumer killed with -9 cannot leave: a TTL index on seen_at forgets it."""
    indexes = job_store.db["workers"].index_information()
    assert indexes["seen_ttl"]["expireAfterSeconds"] == 60


def test_twenty_concurrent_pauses_of_one_queue_have_exactly_one_winner_and_no_error(
    job_store: JobStore,
) -> None:
    """Racing pauses of one queue are one conditional upsert each: one reports the change, the
    others find it paused already; none fails with a duplicate key."""
    controls = Controls(job_store.db)
    barrier = threading.Barrier(20)

    def pause(n: int) -> bool:
        barrier.wait()
        return controls.pause("mail", by=f"ops{n}@example.com", now=T0)

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(pause, range(20)))
    assert results.count(True) == 1 and results.count(False) == 19
    assert controls.paused() == {"mail"}
