"""The backlog: new jobs wait in `jobs_backlog`, claims promote them to `jobs` in small batches,
and a job is in exactly one place at every moment, whoever promotes or cancels at the same time."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import Any

from bson import ObjectId
from pymongo import MongoClient
from pymongo.database import Database
from queue_helpers import FakeClock, live_count, metric

from queue_worker import admin, browse
from queue_worker.backlog import STALE_PROMOTION_S, supports_transactions
from queue_worker.browse import JobFilter
from queue_worker.job import JobState
from queue_worker.layout import BACKLOG, DONE, JOBS
from queue_worker.settings import QueueSettings
from queue_worker.store import JobStore


def small_batches(db: Database[Any], settings: QueueSettings, clock: FakeClock) -> JobStore:
    store = JobStore(db, replace(settings, promote_batch=5), clock=clock)
    store.ensure_indexes()
    return store


def where(store: JobStore, job_id: str) -> list[str]:
    """Return the collections that hold the job (exactly one, unless something is wrong)."""
    oid = ObjectId(job_id)
    return [
        c.name for c in (store.backlog, store.jobs, store.done) if c.count_documents({"_id": oid})
    ]


def test_new_jobs_wait_in_the_backlog_and_keyed_jobs_do_not(job_store: JobStore) -> None:
    """An unkeyed job is stored in the backlog; a keyed one goes straight to `jobs`."""
    plain = job_store.enqueue("t")
    keyed = job_store.enqueue("t", idempotency_key="k")
    assert where(job_store, plain.id) == [BACKLOG]
    assert where(job_store, keyed.id) == [JOBS]
    assert job_store.get(plain.id) == plain


def test_a_claim_promotes_one_batch_in_claim_order(
    db: Database[Any], queue_settings: QueueSettings, fake_clock: FakeClock
) -> None:
    """When `jobs` has nothing due, a claim moves the most urgent batch over and takes its head;
    `jobs` never holds more than one batch of waiting jobs."""
    store = small_batches(db, queue_settings, fake_clock)
    low = store.enqueue_many([{"task": "t"} for _ in range(12)])
    high = store.enqueue("t", priority=9)
    held = store.claim("w")
    assert held is not None and held.job.id == high.id
    assert store.jobs.count_documents({"state": "pending"}) == 4
    assert store.backlog.count_documents({}) == 8
    order = [held.job.id]
    while (held := store.claim("w")) is not None:
        order.append(held.job.id)
        assert store.jobs.count_documents({"state": "pending"}) < 5
    assert order == [high.id, *(job.id for job in low)]


def test_delayed_jobs_stay_in_the_backlog_until_due(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    """A job whose run_at is ahead is neither promoted nor claimed before then."""
    later = job_store.enqueue("t", delay_s=60)
    assert job_store.claim("w") is None
    assert job_store.promote() == 0
    assert where(job_store, later.id) == [BACKLOG]
    fake_clock.advance(60)
    held = job_store.claim("w")
    assert held is not None and held.job.id == later.id


def test_promotion_only_takes_the_claimers_queues(job_store: JobStore) -> None:
    """A claim for one queue promotes only that queue's jobs."""
    mail = job_store.enqueue("t", queue="mail")
    other = job_store.enqueue("t", queue="other")
    held = job_store.claim("w", queues=["mail"])
    assert held is not None and held.job.id == mail.id
    assert where(job_store, other.id) == [BACKLOG]


def test_concurrent_promoters_move_every_job_exactly_once(
    db: Database[Any], queue_settings: QueueSettings, fake_clock: FakeClock
) -> None:
    """8 threads promoting the same backlog at once: each job ends in `jobs` once, none lost."""
    store = small_batches(db, queue_settings, fake_clock)
    jobs = store.enqueue_many([{"task": "t"} for _ in range(60)])
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def promoter() -> None:
        try:
            barrier.wait()
            while store.backlog.count_documents({}):
                store.promote()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=promoter) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert Counter(d["_id"] for d in store.jobs.find({}, {"_id": 1})) == Counter(
        ObjectId(j.id) for j in jobs
    )
    assert store.backlog.count_documents({}) == 0


def test_cancel_racing_promotion_leaves_each_job_in_one_place(
    db: Database[Any], queue_settings: QueueSettings, fake_clock: FakeClock
) -> None:
    """Cancelling jobs while another thread promotes them: a job reported cancelled is in
    jobs_done only and is never claimed; every other job is pending in `jobs`."""
    store = small_batches(db, queue_settings, fake_clock)
    jobs = store.enqueue_many([{"task": "t"} for _ in range(40)])
    barrier = threading.Barrier(2)
    cancelled: list[str] = []

    def promote() -> None:
        barrier.wait()
        while store.backlog.count_documents({"state": "pending"}):
            store.promote()

    def cancel() -> None:
        barrier.wait()
        cancelled.extend(j.id for j in jobs[::2] if store.cancel(j.id) is not None)

    threads = [threading.Thread(target=promote), threading.Thread(target=cancel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(cancelled) == 20  # every one of them was pending, wherever it was
    for job in jobs:
        expected = [DONE] if job.id in cancelled else [JOBS]
        assert where(store, job.id) == expected
    claimed = []
    while (held := store.claim("w")) is not None:
        claimed.append(held.job.id)
    assert sorted(claimed) == sorted(j.id for j in jobs[1::2])


def test_operator_views_include_the_backlog(job_store: JobStore, fake_clock: FakeClock) -> None:
    """stats, list and the oldest-due age count jobs still waiting in the backlog."""
    waiting = job_store.enqueue("t")
    fake_clock.advance(30)
    stats = admin.stats(job_store, fake_clock.now)
    assert stats.counts["default"]["pending"] == 1
    assert stats.oldest_due_age_s["default"] == 30.0
    listed = browse.find_jobs(job_store, JobFilter(state=JobState.PENDING))
    assert [job.id for job in listed] == [waiting.id]
    assert admin.cancel(job_store, waiting.id).state is JobState.CANCELLED
    assert live_count(job_store) == 0


def test_a_cancelled_job_left_in_the_backlog_is_swept(job_store: JobStore) -> None:
    """A cancel that died before archiving leaves a cancelled backlog job; the sweep moves it."""
    job = job_store.enqueue("t")
    job_store.backlog.update_one(
        {"_id": ObjectId(job.id)},
        {"$set": {"state": "cancelled", "finished_at": job.created_at + timedelta(seconds=1)}},
    )
    assert job_store.archive_finished() == 1
    assert where(job_store, job.id) == [DONE]


def test_only_servers_with_transactions_are_accepted() -> None:
    """A replica set member or mongos passes; a standalone mongod's hello does not."""
    assert supports_transactions({"isWritablePrimary": True, "setName": "rs0"})
    assert supports_transactions({"isWritablePrimary": True, "msg": "isdbgrid"})
    assert not supports_transactions({"isWritablePrimary": True, "maxWireVersion": 25})


def test_the_local_server_is_accepted(job_store: JobStore, db: Database[Any]) -> None:
    """The test server presents itself as a replica set, so ensure_indexes goes through."""
    job_store.ensure_indexes()
    assert "promote_order" in job_store.backlog.index_information()


def test_a_batch_held_by_a_dead_promoter_delays_only_that_batch(
    db: Database[Any], queue_settings: QueueSettings, fake_clock: FakeClock, mongo_uri: str
) -> None:
    """While another client's open, registered transaction holds the top batch (a promoter
    killed before it committed), claims run the next batches; once it is older than
    STALE_PROMOTION_S the next conflict aborts it and its jobs run."""
    store = small_batches(db, queue_settings, fake_clock)
    jobs = store.enqueue_many([{"task": "t", "priority": 20 - i} for i in range(20)])
    dead = MongoClient(mongo_uri, tz_aware=True)
    session = dead.start_session()
    try:
        session.start_transaction()
        held = list(dead[db.name][BACKLOG].find({}, session=session).sort("priority", -1))[:5]
        dead[db.name].job_promotions.insert_one(
            {"_id": session.session_id["id"], "since": fake_clock.now}
        )
        dead[db.name].jobs.insert_many(held, session=session)
        dead[db.name][BACKLOG].delete_many(
            {"_id": {"$in": [d["_id"] for d in held]}}, session=session
        )
        before = metric("queue_promotions_total", result="conflict")
        claimed = [lease.job.id for _ in range(15) if (lease := store.claim("w")) is not None]
        assert claimed == [job.id for job in jobs[5:]]
        assert metric("queue_promotions_total", result="conflict") > before
        assert store.claim("w") is None  # still young: not aborted yet
        fake_clock.advance(STALE_PROMOTION_S + 1)
        rest = [lease.job.id for _ in range(5) if (lease := store.claim("w")) is not None]
        assert rest == [job.id for job in jobs[:5]]
        assert store.promotions.count_documents({}) == 0
        assert live_count(store, {"state": "running"}) == 20
    finally:
        session.end_session()
        dead.close()
