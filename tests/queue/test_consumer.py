"""The consumer: one pass per run_once(now), slots, polling, outcomes, heartbeats, timeouts,
graceful stop and the isolation of suspect jobs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId
from queue_helpers import T0, FakeClock, metric, wait_until

from queue_worker.claim import Suspects
from queue_worker.consumer import Consumer
from queue_worker.controls import Controls
from queue_worker.errors import NonRetryableError, RetryAfter
from queue_worker.housekeeping import SUSPECT_CHECK_EVERY_S
from queue_worker.job import CrashInfo, DeadReason, JobState
from queue_worker.settings import QueueSettings
from queue_worker.store import JobStore
from queue_worker.tasks import TaskContext, TaskRegistry


class Blocker:
    """A handler that runs until the test releases it (or, if cooperative, until told to stop)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.saw_stop = threading.Event()
        self.calls = 0

    def __call__(self, payload: dict[str, Any], ctx: TaskContext) -> Any:
        self.calls += 1
        while not self.release.wait(0.005):
            if ctx.should_stop():
                self.saw_stop.set()
                if payload.get("cooperative"):
                    return "stopped early"
        return {"done": payload.get("n")}


@pytest.fixture
def blocker() -> Iterator[Blocker]:
    gate = Blocker()
    yield gate
    gate.release.set()  # never leave a handler thread blocked after its test


@pytest.fixture
def registry(blocker: Blocker) -> TaskRegistry:
    reg = TaskRegistry()
    reg.task("quick")(lambda payload, ctx: {"echo": payload.get("n")})
    reg.task("block")(blocker)

    def explode(payload: dict[str, Any], ctx: TaskContext) -> None:
        raise ValueError("exploded")

    def refuse(payload: dict[str, Any], ctx: TaskContext) -> None:
        raise NonRetryableError("bad payload")

    reg.task("explode")(explode)
    reg.task("refuse")(refuse)
    return reg


def make(store: JobStore, registry: TaskRegistry, clock: FakeClock, **kwargs: Any) -> Consumer:
    kwargs.setdefault("concurrency", 2)
    return Consumer(store, registry, store.settings, owner="test:1", clock=clock, **kwargs)


def threads_done(consumer: Consumer) -> bool:
    """True once every slot's thread is done: a failure written, a success handed to the loop;
    the successes are then written as the loop's next pass would (it also reaps the slots)."""
    done = all(slot.finished or slot.succeeded for slot in consumer.slots.active)
    if done:
        consumer.slots.flush_acks(consumer.clock())
    return done


def state_of(store: JobStore, job_id: str) -> JobState | None:
    job = store.get(job_id)
    return job.state if job else None


def test_a_job_runs_to_success_and_is_archived(
    job_store: JobStore, registry: TaskRegistry, fake_clock: FakeClock
) -> None:
    """A claimed job's handler runs, its result is stored, and the job moves to jobs_done."""
    job = job_store.enqueue("quick", {"n": 7})
    consumer = make(job_store, registry, fake_clock)
    assert consumer.run_once(fake_clock.now) == 1
    wait_until(lambda: threads_done(consumer))
    consumer.run_once(fake_clock.advance(1))
    assert consumer.jobs_finished == 1 and consumer.running_tasks() == []
    assert job_store.jobs.count_documents({}) == 0
    done = job_store.get(job.id)
    assert done is not None and done.result == {"echo": 7} and done.attempts == 1


def test_claims_only_while_a_slot_is_free(
    job_store: JobStore, registry: TaskRegistry, fake_clock: FakeClock, blocker: Blocker
) -> None:
    """With 2 slots and 4 jobs, a pass starts 2; the next starts 1 only after one finishes."""
    jobs = job_store.enqueue_many([{"task": "block", "payload": {"n": i}} for i in range(4)])
    consumer = make(job_store, registry, fake_clock)
    assert consumer.run_once(fake_clock.now) == 2
    assert consumer.running_tasks() == ["block", "block"]
    assert consumer.run_once(fake_clock.advance(1)) == 0
    blocker.release.set()
    wait_until(lambda: threads_done(consumer))
    assert consumer.run_once(fake_clock.advance(1)) == 2
    wait_until(lambda: threads_done(consumer))
    assert all(state_of(job_store, j.id) is JobState.SUCCEEDED for j in jobs)


def test_polling_backs_off_when_idle_and_claims_at_once_after_a_hit(
    job_store: JobStore, registry: TaskRegistry, fake_clock: FakeClock
) -> None:
    """Idle passes claim at growing intervals up to poll_max_s; a hit is followed by more claims
    in the same pass."""
    consumer = make(job_store, registry, fake_clock, concurrency=3)
    claims: list[Any] = []
    real_claim = job_store.claim

    def spy(*args: Any, **kwargs: Any) -> Any:
        claims.append(kwargs["now"])
        return real_claim(*args, **kwargs)

    job_store.claim = spy  # type: ignore[method-assign]
    start = fake_clock.now
    for _ in range(400):  # 4 s of passes every 10 ms
        consumer.run_once(fake_clock.advance(0.01))
    gaps = [(b - a).total_seconds() for a, b in zip(claims, claims[1:], strict=False)]
    assert gaps[:3] == pytest.approx([0.01, 0.02, 0.04], abs=0.011)
    assert max(gaps) <= job_store.settings.poll_max_s + 0.011
    assert len(claims) < 30  # not one claim per pass
    assert (claims[0] - start).total_seconds() < 0.02
    job_store.enqueue_many([{"task": "quick"} for _ in range(3)])
    next_claim = consumer.wakeup.next_claim_at()
    assert next_claim is not None
    assert consumer.run_once(next_claim) == 3  # one pass takes all three


def test_handler_errors_are_retried_and_non_retryable_ones_bury(
    job_store: JobStore, registry: TaskRegistry, fake_clock: FakeClock
) -> None:
    """A raising handler is a failed attempt (pending, backoff); NonRetryableError is dead."""
    retried = job_store.enqueue("explode")
    refused = job_store.enqueue("refuse")
    unknown = job_store.enqueue("not.registered")
    consumer = make(job_store, registry, fake_clock, concurrency=3)
    assert consumer.run_once(fake_clock.now) == 3
    wait_until(lambda: job_store.jobs.count_documents({"state": "running"}) == 0)
    after = job_store.get(retried.id)
    assert after is not None and after.state is JobState.PENDING
    assert after.last_error == "ValueError: exploded" and after.run_at > fake_clock.now
    dead = job_store.get(refused.id)
    assert dead is not None and dead.dead_reason is DeadReason.NON_RETRYABLE
    assert dead.last_error == "NonRetryableError: bad payload"
    lost = job_store.get(unknown.id)
    assert lost is not None and lost.dead_reason is DeadReason.NON_RETRYABLE


def test_graceful_drain_lets_quick_jobs_finish_and_releases_the_rest(
    job_store: JobStore, registry: TaskRegistry, fake_clock: FakeClock, blocker: Blocker
) -> None:
    """drain() stops claiming, waits for running jobs up to its deadline, then releases the rest
    to pending without counting their attempt; their handlers are told to stop."""
    quick = job_store.enqueue("quick", priority=1)
    slow = job_store.enqueue("block")
    job_store.enqueue("quick", priority=-1)  # never claimed: the consumer is stopping
    elapsed = [0.0]  # drain's deadline clock: it moves only once the quick job is recorded
    consumer = make(job_store, registry, fake_clock, monotonic=lambda: elapsed[0])
    assert consumer.run_once(fake_clock.now) == 2
    before = metric("queue_jobs_released_total", queue="default", reason="shutdown")

    def between_passes() -> bool:
        if state_of(job_store, quick.id) is JobState.SUCCEEDED:
            elapsed[0] += 0.5
        return True

    assert consumer.drain(1.0, between_passes=between_passes) == 1
    assert state_of(job_store, quick.id) is JobState.SUCCEEDED
    released = job_store.get(slow.id)
    assert released is not None and released.state is JobState.PENDING
    assert (released.attempts, released.lease_token) == (0, None)
    assert blocker.saw_stop.wait(5)
    assert job_store.jobs.count_documents({"state": "pending"}) == 2
    assert metric("queue_jobs_released_total", queue="default", reason="shutdown") == before + 1
    assert consumer.running_tasks() == []


def test_run_stops_on_request_and_releases_running_jobs(
    job_store: JobStore,
    registry: TaskRegistry,
    queue_settings: QueueSettings,
    blocker: Blocker,
    fake_clock: FakeClock,
) -> None:
    """run() in a thread stops soon after request_stop() and leaves no job running."""
    job = job_store.enqueue("block")
    consumer = Consumer(
        job_store, registry, queue_settings, owner="test:2", stop_timeout_s=0.2, clock=fake_clock
    )
    thread = threading.Thread(target=consumer.run)
    thread.start()
    wait_until(lambda: state_of(job_store, job.id) is JobState.RUNNING)
    consumer.request_stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
    released = job_store.get(job.id)
    assert released is not None and released.state is JobState.PENDING and released.attempts == 0


def test_heartbeats_keep_the_lease_and_a_lost_lease_records_nothing(
    job_store: JobStore, registry: TaskRegistry, fake_clock: FakeClock, blocker: Blocker
) -> None:
    """Passes send heartbeats every heartbeat_s; once another worker took the job over, the
    consumer stops heartbeating, tells the handler to stop, and writes no result."""
    job = job_store.enqueue("block")
    consumer = make(job_store, registry, fake_clock)
    t0 = fake_clock.now
    consumer.run_once(t0)
    consumer.run_once(fake_clock.advance(10))
    doc = job_store.jobs.find_one({"_id": ObjectId(job.id)})
    assert doc is not None and doc["lease_until"] == t0 + timedelta(seconds=40)
    fake_clock.advance(25)  # past the first lease, inside the extended one
    assert job_store.claim("thief") is None
    fake_clock.advance(6)  # no pass ran: the extended lease expires
    thief = job_store.claim("thief")
    assert thief is not None
    before = metric("queue_leases_lost_total", queue="default", task="block")
    consumer.run_once(fake_clock.now)
    assert blocker.saw_stop.wait(5)
    blocker.release.set()
    wait_until(lambda: consumer.run_once(fake_clock.now) == 0 and consumer.running_tasks() == [])
    doc = job_store.jobs.find_one({"_id": ObjectId(job.id)})
    assert doc is not None and doc["state"] == "running" and doc["lease_token"] == thief.token
    assert metric("queue_leases_lost_total", queue="default", task="block") == before + 1


def test_heartbeats_keep_a_short_lease_alive_under_a_long_job(
    job_store: JobStore, registry: TaskRegistry, queue_settings: QueueSettings, blocker: Blocker
) -> None:
    """Passes every tenth of a lease keep a job leased for twenty lease lengths: no other worker
    can claim it meanwhile, and it then succeeds on its first attempt."""
    settings = QueueSettings(
        mongodb_uri=queue_settings.mongodb_uri,
        mongodb_database=queue_settings.mongodb_database,
        lease_s=0.6,
        heartbeat_s=0.2,
    )
    clock = FakeClock(T0)
    store = JobStore(job_store.db, settings, clock=clock)
    job = store.enqueue("block")
    consumer = Consumer(store, registry, settings, owner="test:hb", clock=clock)
    consumer.run_once(clock.now)
    for _ in range(200):  # 12 s of fake time, 0.06 s per pass
        consumer.run_once(clock.advance(0.06))
        assert store.claim("thief", now=clock.now) is None
    blocker.release.set()
    wait_until(lambda: threads_done(consumer))
    assert state_of(store, job.id) is JobState.SUCCEEDED
    done = store.get(job.id)
    assert done is not None and (done.attempts, done.rescues) == (1, 0)


def test_timeout_fails_the_attempt_frees_the_slot_and_asks_for_replacement(
    job_store: JobStore, registry: TaskRegistry, fake_clock: FakeClock, blocker: Blocker
) -> None:
    """A job past timeout_s is a failed attempt written via its lease; its thread is abandoned,
    the slot is free at once, and the consumer asks to be replaced; standalone it stops claiming
    once max_abandoned threads are stuck, and the late handler's result is dropped."""
    job = job_store.enqueue("block", timeout_s=5)
    consumer = make(job_store, registry, fake_clock, max_abandoned=1)
    consumer.run_once(fake_clock.now)
    consumer.run_once(fake_clock.advance(6))
    after = job_store.get(job.id)
    assert after is not None and after.state is JobState.PENDING
    assert (
        after.attempts == 1 and after.last_error is not None and "TimeoutError" in after.last_error
    )
    assert consumer.running_tasks() == [] and consumer.jobs_finished == 1
    assert consumer.needs_replacement and consumer.abandoned_threads() == 1
    assert consumer.stopping
    assert blocker.saw_stop.wait(5)
    job_store.enqueue("quick")
    assert consumer.run_once(fake_clock.advance(100)) == 0
    blocker.release.set()
    wait_until(lambda: consumer.abandoned_threads() == 0)
    late = job_store.get(job.id)
    assert late is not None and late.state is JobState.PENDING and late.result is None


def test_a_rescued_job_past_its_last_attempt_goes_dead_without_running(
    job_store: JobStore, registry: TaskRegistry, fake_clock: FakeClock, blocker: Blocker
) -> None:
    """A job whose worker died during its final attempt is buried as exhausted when rescued."""
    job = job_store.enqueue("block", max_attempts=1)
    assert job_store.claim("died") is not None
    fake_clock.advance(31)
    consumer = make(job_store, registry, fake_clock)
    consumer.run_once(fake_clock.now)
    wait_until(lambda: state_of(job_store, job.id) is JobState.DEAD)
    assert blocker.calls == 0
    dead = job_store.get(job.id)
    assert dead is not None and dead.dead_reason is DeadReason.EXHAUSTED


def _make_suspect(store: JobStore, task: str, priority: int = 0, queue: str = "default") -> str:
    job = store.enqueue(task, priority=priority, queue=queue)
    held = store.claim("crashed:1", queues=[queue], suspects=Suspects.ALLOW)
    assert held is not None and held.job.id == job.id
    assert store.release_owner("crashed:1", crash=CrashInfo(signal=9)) == 1
    return job.id


def test_an_idle_consumer_runs_a_suspect_job_alone(
    job_store: JobStore, registry: TaskRegistry, fake_clock: FakeClock, blocker: Blocker
) -> None:
    """A suspect job is taken only by an idle consumer, which then claims nothing else until
    it finishes."""
    suspect = _make_suspect(job_store, "block", priority=5)
    job_store.enqueue_many([{"task": "quick"} for _ in range(2)])
    consumer = make(job_store, registry, fake_clock, concurrency=3)
    assert consumer.run_once(fake_clock.now) == 1
    assert consumer.running_tasks() == ["block"]
    assert consumer.run_once(fake_clock.advance(1)) == 0
    blocker.release.set()
    wait_until(lambda: threads_done(consumer))
    assert state_of(job_store, suspect) is JobState.SUCCEEDED
    assert consumer.run_once(fake_clock.advance(1)) == 2


def test_a_busy_consumer_skips_suspects_then_drains_to_run_one_alone(
    job_store: JobStore, registry: TaskRegistry, fake_clock: FakeClock, blocker: Blocker
) -> None:
    """While other jobs run, suspects are skipped; once housekeeping sees one waiting, the
    consumer stops claiming, drains, and runs the suspect by itself."""
    consumer = make(job_store, registry, fake_clock, concurrency=3)
    job_store.enqueue("block", {"n": 1})
    consumer.run_once(fake_clock.now)  # also the first suspect check: nothing waits yet
    suspect = _make_suspect(job_store, "quick", priority=9)
    job_store.enqueue("quick", {"n": 2})
    assert consumer.run_once(fake_clock.advance(1)) == 1  # the innocent one, not the suspect
    assert state_of(job_store, suspect) is JobState.PENDING
    job_store.enqueue("quick", {"n": 3})
    assert consumer.run_once(fake_clock.advance(10)) == 0  # suspect seen: stop claiming
    blocker.release.set()
    wait_until(lambda: threads_done(consumer))
    assert consumer.run_once(fake_clock.advance(1)) == 1
    assert consumer.running_tasks() == ["quick"]
    wait_until(lambda: threads_done(consumer))
    assert state_of(job_store, suspect) is JobState.SUCCEEDED
    assert consumer.run_once(fake_clock.advance(1)) == 1  # back to normal claiming


def test_wait_for_work_returns_as_soon_as_a_job_finishes(
    job_store: JobStore, registry: TaskRegistry, fake_clock: FakeClock, blocker: Blocker
) -> None:
    """Between passes, wait_for_work sleeps until a slot frees up rather than a fixed interval."""
    job_store.enqueue("block")
    consumer = make(job_store, registry, fake_clock, concurrency=1)
    consumer.run_once(fake_clock.now)
    timer = threading.Timer(0.1, blocker.release.set)
    timer.start()
    started = time.monotonic()
    consumer.wait_for_work(fake_clock.now, max_s=120.0)
    assert time.monotonic() - started < 60.0  # woken by the job, not by the 120 s bound
    timer.join()
    assert consumer.run_once(fake_clock.advance(0.1)) == 0
    assert consumer.jobs_finished == 1


def test_a_consumer_with_an_abandoned_thread_never_takes_a_suspect(
    job_store: JobStore, registry: TaskRegistry, fake_clock: FakeClock, blocker: Blocker
) -> None:
    """A timed-out thread still running counts as a neighbour: suspects are left to others,
    while ordinary jobs are still claimed."""
    job_store.enqueue("block", timeout_s=5)
    consumer = make(job_store, registry, fake_clock, max_abandoned=5)
    consumer.run_once(fake_clock.now)
    consumer.run_once(fake_clock.advance(6))
    assert consumer.abandoned_threads() == 1
    suspect = _make_suspect(job_store, "quick", priority=9)
    plain = job_store.enqueue("quick")
    fake_clock.advance(60)  # past the timed-out job's backoff too
    job_store.jobs.delete_many({"task": "block"})
    assert consumer.run_once(fake_clock.now) == 1
    wait_until(lambda: threads_done(consumer))
    assert state_of(job_store, plain.id) is JobState.SUCCEEDED
    assert state_of(job_store, suspect) is JobState.PENDING


def test_retry_after_from_a_handler_delays_the_next_attempt_at_least_that_long(
    job_store: JobStore, registry: TaskRegistry, fake_clock: FakeClock
) -> None:
    """A handler raising RetryAfter(delay_s=120) fails the attempt, and the job is not due again
    before 120 s, though the backoff alone would retry it within seconds."""

    def outage(payload: dict[str, Any], ctx: TaskContext) -> None:
        raise RetryAfter("the disk is full", delay_s=120)

    registry.task("outage")(outage)
    job = job_store.enqueue("outage")
    consumer = make(job_store, registry, fake_clock)
    consumer.run_once(fake_clock.now)
    wait_until(lambda: threads_done(consumer))
    after = job_store.get(job.id)
    assert after is not None and after.state is JobState.PENDING and after.attempts == 1
    assert after.run_at >= fake_clock.now + timedelta(seconds=120)
    assert after.last_error == "RetryAfter: the disk is full"


def test_an_orphaned_duplicate_of_a_finished_keyed_job_is_cancelled_unrun(
    job_store: JobStore, registry: TaskRegistry, fake_clock: FakeClock
) -> None:
    """An enqueuer that died between its insert and its key check leaves a held job; the
    consumer that claims it makes the check and cancels it when the key's job already ran."""
    first = job_store.enqueue("quick", {"n": 1}, idempotency_key="k")
    consumer = make(job_store, registry, fake_clock)
    consumer.run_once(fake_clock.now)
    wait_until(lambda: threads_done(consumer))
    consumer.run_once(fake_clock.advance(1))
    consumer.housekeeping.flush()  # archived: the key's marker is in job_keys
    assert job_store.keys.count_documents({"_id": "k"}) == 1
    orphan = job_store.jobs.insert_one(
        {"queue": "default", "task": "quick", "payload": {"n": 2}, "state": "pending",
         "priority": 0, "run_at": fake_clock.now, "hold_run_at": fake_clock.now,
         "attempts": 0, "max_attempts": 3, "timeout_s": 60.0, "created_at": fake_clock.now,
         "crashes": 0, "rescues": 0, "idempotency_key": "k"}
    ).inserted_id  # fmt: skip
    assert consumer.run_once(fake_clock.advance(1)) == 1
    doc = job_store.jobs.find_one({"_id": orphan})
    assert doc is not None and doc["state"] == "cancelled"
    assert doc["last_error"] == f"a duplicate of job {first.id}, which has its key"
    assert "result" not in doc


def test_a_suspect_in_a_paused_queue_does_not_make_a_busy_consumer_drain(
    job_store: JobStore, registry: TaskRegistry, fake_clock: FakeClock, blocker: Blocker
) -> None:
    """A suspect waiting in a queue an operator paused cannot be claimed, so it must not stop
    the consumer's claims in its other queues (it would drain every suspect check for nothing)."""
    Controls(job_store.db).pause("mail", by="ops", now=fake_clock.now)
    _make_suspect(job_store, "quick", priority=9, queue="mail")
    consumer = make(job_store, registry, fake_clock, concurrency=3, queues=["default", "mail"])
    job_store.enqueue("block", {"n": 1})
    assert consumer.run_once(fake_clock.now) == 1
    job_store.enqueue("quick", {"n": 2})
    assert consumer.run_once(fake_clock.advance(SUSPECT_CHECK_EVERY_S + 1)) == 1
    assert not consumer.housekeeping.suspect_waiting


def test_each_consumer_module_logs_under_its_own_name() -> None:
    """A log line names the module that wrote it: housekeeping and slots no longer borrow the
    consumer's logger, so an operator can filter one of them."""
    from queue_worker import consumer, housekeeping, slots, wakeup

    for module in (consumer, housekeeping, slots, wakeup):
        assert module.log.name == module.__name__
