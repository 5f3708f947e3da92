"""Claims, leases and fencing: atomic claims, rescue after expiry, stale workers, owner release."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta

import queue_procs
from bson import ObjectId
from queue_helpers import FakeClock, metric, promote_all

from queue_worker.claim import Suspects
from queue_worker.job import CrashInfo, DeadReason, JobState
from queue_worker.store import JobStore


def test_claim_takes_highest_priority_then_earliest_due(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    """Claims go by priority (higher first), then run_at (earlier first), and set the lease."""
    late = job_store.enqueue("t", priority=1)
    fake_clock.advance(-5)
    early = job_store.enqueue("t", priority=1)
    low = job_store.enqueue("t", priority=0)
    fake_clock.advance(5)
    order = []
    while (held := job_store.claim("w1")) is not None:
        order.append(held.job.id)
        assert held.job.state is JobState.RUNNING and held.job.attempts == 1
        assert held.job.lease_owner == "w1" and held.job.lease_token == held.token
        assert held.job.lease_until == fake_clock.now + timedelta(seconds=30)
        assert held.job.started_at == fake_clock.now
    assert order == [early.id, late.id, low.id]


def test_claim_skips_jobs_not_yet_due_and_other_queues(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    """A delayed job is not claimable before its run_at; a claim only looks at its queues."""
    job_store.enqueue("t", delay_s=10)
    job_store.enqueue("t", queue="other")
    assert job_store.claim("w") is None
    assert job_store.claim("w", queues=["other"]) is not None
    fake_clock.advance(10)
    assert job_store.claim("w") is not None


def test_no_job_is_claimed_twice_by_four_processes(
    live_store: JobStore, mongo_uri: str, db_name: str
) -> None:
    """Four processes claiming at once never get the same job while its lease is valid."""
    jobs = live_store.enqueue_many([{"task": "t"} for _ in range(40)])
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=queue_procs.claim_until_empty, args=(mongo_uri, db_name, f"p{i}", barrier, out)
        )
        for i in range(4)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    claimed = [job_id for result in results for job_id, _ in result]
    assert sorted(claimed) == sorted(j.id for j in jobs)  # each exactly once
    assert len({token for result in results for _, token in result}) == 40
    assert live_store.jobs.count_documents({"state": "running", "attempts": 1}) == 40


def test_expired_lease_is_rescued_and_counted(job_store: JobStore, fake_clock: FakeClock) -> None:
    """A running job whose lease expired is claimable again, counted as a rescue."""
    job_store.enqueue("t.rescue")
    first = job_store.claim("dead-worker")
    assert first is not None
    fake_clock.advance(29)
    assert job_store.claim("w2") is None  # lease still valid
    fake_clock.advance(2)
    before = metric("queue_jobs_rescued_total", queue="default", task="t.rescue")
    second = job_store.claim("w2")
    assert second is not None and second.rescued
    assert second.job.id == first.job.id and second.token != first.token
    assert (second.job.attempts, second.job.rescues, second.job.lease_owner) == (2, 1, "w2")
    assert metric("queue_jobs_rescued_total", queue="default", task="t.rescue") == before + 1


def test_stale_worker_cannot_complete_fail_heartbeat_or_release(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    """Once its lease was taken over, every write of the old worker is fenced off and counted."""
    job_store.enqueue("t.stale")
    stale = job_store.claim("old")
    assert stale is not None
    fake_clock.advance(31)
    owner = job_store.claim("new")
    assert owner is not None
    before = metric("queue_leases_lost_total", queue="default", task="t.stale")
    assert job_store.heartbeat(stale) is False
    assert job_store.succeed(stale, {"from": "stale"}) is None
    assert job_store.fail(stale, "stale failure") is None
    assert job_store.fail(stale, "stale failure", retryable=False) is None
    assert job_store.release(stale) is False
    assert metric("queue_leases_lost_total", queue="default", task="t.stale") == before + 5
    doc = job_store.jobs.find_one({"_id": ObjectId(owner.job.id)})
    assert doc is not None
    assert (doc["state"], doc["lease_token"], doc.get("result")) == ("running", owner.token, None)
    assert job_store.heartbeat(owner) is True
    assert job_store.succeed(owner, {"from": "owner"}) is not None


def test_heartbeat_extends_the_lease_so_no_one_else_can_claim(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    """Heartbeats move lease_until forward, so a job outliving its first lease is not rescued."""
    job_store.enqueue("t")
    held = job_store.claim("w")
    assert held is not None
    for _ in range(6):  # 60 s of a 30 s lease, a heartbeat every 10 s
        fake_clock.advance(10)
        assert job_store.heartbeat(held) is True
        assert job_store.claim("thief") is None
    doc = job_store.jobs.find_one({"_id": ObjectId(held.job.id)})
    assert doc is not None and doc["lease_until"] == fake_clock.now + timedelta(seconds=30)


def test_release_returns_the_job_without_counting_the_attempt(job_store: JobStore) -> None:
    """A released job is pending again with its attempt given back and no lease fields."""
    job_store.enqueue("t.rel")
    held = job_store.claim("w")
    assert held is not None
    before = metric("queue_jobs_released_total", queue="default", reason="shutdown")
    assert job_store.release(held) is True
    job = job_store.get(held.job.id)
    assert job is not None and job.state is JobState.PENDING and job.attempts == 0
    assert (job.lease_token, job.lease_until, job.lease_owner) == (None, None, None)
    assert metric("queue_jobs_released_total", queue="default", reason="shutdown") == before + 1


def test_release_owner_releases_only_that_owners_running_jobs(job_store: JobStore) -> None:
    """release_owner gives back every running job of one owner at once, and nothing else."""
    job_store.enqueue_many([{"task": "t"} for _ in range(3)])
    a1, a2 = job_store.claim("host:1"), job_store.claim("host:1")
    b = job_store.claim("host:2")
    assert a1 and a2 and b
    assert job_store.release_owner("host:1") == 2
    for held in (a1, a2):
        job = job_store.get(held.job.id)
        assert job is not None and job.state is JobState.PENDING
        assert (job.attempts, job.crashes) == (0, 0)
    other = job_store.get(b.job.id)
    assert other is not None and other.state is JobState.RUNNING
    assert job_store.release_owner("host:1") == 0


def test_crashes_are_counted_and_a_poison_job_goes_dead(job_store: JobStore) -> None:
    """Each crash release counts a crash and records it; at poison_crashes the job is buried."""
    job_store.enqueue("t.poison")
    before = metric("queue_jobs_poison_total", queue="default", task="t.poison")
    for crash in (1, 2):
        held = job_store.claim("c:1", suspects=Suspects.ALLOW)
        assert held is not None
        assert job_store.release_owner("c:1", crash=CrashInfo(signal=9)) == 1
        doc = job_store.jobs.find_one({"_id": ObjectId(held.job.id)})
        assert doc is not None and doc["state"] == "pending"
        assert (doc["crashes"], doc["attempts"]) == (crash, 0)
        assert doc["last_crash"]["signal"] == 9 and doc["last_crash"]["owner"] == "c:1"
    assert job_store.claim("c:1") is None  # a suspect is not claimed beside other work
    held = job_store.claim("c:1", suspects=Suspects.ONLY)
    assert held is not None
    assert job_store.release_owner("c:1", crash=CrashInfo(exit_code=70)) == 1
    job = job_store.get(held.job.id)
    assert job is not None and job.state is JobState.DEAD
    assert (job.dead_reason, job.crashes) == (DeadReason.POISON, 3)
    assert metric("queue_jobs_poison_total", queue="default", task="t.poison") == before + 1


def test_suspect_filter_modes(job_store: JobStore) -> None:
    """EXCLUDE never returns a suspect, ONLY returns only suspects, ALLOW returns either."""
    suspect = job_store.enqueue("t", priority=5)
    innocent = job_store.enqueue("t")
    promote_all(job_store)  # a suspect is one that crashed a consumer: it has been claimed
    job_store.jobs.update_one({"_id": ObjectId(suspect.id)}, {"$set": {"crashes": 1}})
    assert job_store.suspect_due() is True
    held = job_store.claim("w", suspects=Suspects.EXCLUDE)
    assert held is not None and held.job.id == innocent.id
    assert job_store.claim("w", suspects=Suspects.EXCLUDE) is None
    held = job_store.claim("w", suspects=Suspects.ONLY)
    assert held is not None and held.job.id == suspect.id and held.suspect
    assert job_store.suspect_due() is False


def test_an_empty_list_of_queues_claims_nothing(job_store: JobStore) -> None:
    """`queues=[]` means no queue (every queue of a consumer paused), not the default queue:
    single and batch claims, promotion and the suspect check all find nothing; None means the
    default queue."""
    job = job_store.enqueue("t")
    assert job_store.claim("w:1", queues=[]) is None
    assert job_store.claim_many("w:1", limit=4, queues=[]) == []
    assert job_store.promote([]) == 0
    assert job_store.suspect_due([]) is False
    held = job_store.claim("w:1", queues=None)
    assert held is not None and held.job.id == job.id
