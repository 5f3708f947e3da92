"""Archiving finished jobs out of the claimed collection, and retention by TTL index."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo.database import Database
from queue_helpers import FakeClock

from queue_worker.indexes import TTL_INDEX
from queue_worker.job import JobState
from queue_worker.layout import DONE, JOBS
from queue_worker.settings import QueueSettings
from queue_worker.store import JobStore


def _succeeded_doc(store: JobStore, task: str = "t") -> dict[str, Any]:
    store.enqueue(task)
    held = store.claim("w")
    assert held is not None
    final = store.succeed(held, {"n": 1})
    assert final is not None
    return final


def test_archive_moves_succeeded_jobs_and_get_still_finds_them(job_store: JobStore) -> None:
    """Archived jobs leave `jobs` for `jobs_done` unchanged, and get() returns them."""
    final = _succeeded_doc(job_store)
    stored = job_store.jobs.find_one({"_id": final["_id"]})
    assert stored == final  # the in-memory final document is exactly what is stored
    assert job_store.archive([final]) == 1
    assert job_store.jobs.count_documents({}) == 0
    assert job_store.done.find_one({"_id": final["_id"]}) == final
    job = job_store.get(str(final["_id"]))
    assert job is not None and job.state is JobState.SUCCEEDED and job.result == {"n": 1}


def test_archive_never_moves_live_jobs(job_store: JobStore) -> None:
    """Only succeeded and cancelled documents move; pending, running and dead ones stay."""
    job_store.enqueue("t")
    held = job_store.claim("w")
    assert held is not None
    assert job_store.archive([held.doc]) == 0
    dead_job = job_store.enqueue("t", max_attempts=1)
    held = job_store.claim("w")
    assert held is not None
    job_store.fail(held, "x")
    assert job_store.archive_finished() == 0
    assert job_store.jobs.count_documents({}) == 2
    assert job_store.done.count_documents({}) == 0
    assert job_store.get(dead_job.id) is not None


def test_archive_after_a_crash_between_copy_and_delete_converges(job_store: JobStore) -> None:
    """A job copied to jobs_done but not deleted from jobs (archiver crashed) is in both; the
    sweep then finishes the move, ignoring the existing copy."""
    final = _succeeded_doc(job_store)
    job_store.done.insert_one(dict(final))  # the crashed archiver's step 2
    assert job_store.get(str(final["_id"])) is not None
    assert job_store.archive_finished() == 1
    assert job_store.jobs.count_documents({}) == 0
    assert job_store.done.count_documents({}) == 1


def test_retention_is_a_ttl_index_on_finished_at(
    job_store: JobStore, queue_settings: QueueSettings
) -> None:
    """jobs_done and job_keys expire documents retention_s after finished_at, which every
    finished job carries as a datetime."""
    for collection in (job_store.done, job_store.keys):
        index = collection.index_information()[TTL_INDEX]
        assert index["key"] == [("finished_at", 1)]
        assert index["expireAfterSeconds"] == queue_settings.retention_s
    final = _succeeded_doc(job_store)
    job_store.archive([final])
    doc = job_store.done.find_one({"_id": final["_id"]})
    assert doc is not None and isinstance(doc["finished_at"], datetime)
    assert doc["finished_at"].tzinfo is not None


def test_ensure_indexes_is_idempotent_and_follows_a_retention_change(
    db: Database[Any], queue_settings: QueueSettings
) -> None:
    """Running ensure_indexes twice is harmless; a new retention updates the TTL in place."""
    JobStore(db, queue_settings).ensure_indexes()
    JobStore(db, queue_settings).ensure_indexes()
    shorter = QueueSettings(mongodb_database=queue_settings.mongodb_database, retention_s=3600)
    JobStore(db, shorter).ensure_indexes()
    assert db[DONE].index_information()[TTL_INDEX]["expireAfterSeconds"] == 3600
    assert "claim_order" in db[JOBS].index_information()
    unique = db[JOBS].index_information()["idempotency_key_unique"]
    assert unique["unique"] is True


@pytest.mark.slow  # the server's TTL monitor runs on its own real-time schedule (~60 s)
def test_ttl_sweeper_removes_expired_finished_jobs(
    db: Database[Any], queue_settings: QueueSettings
) -> None:
    """The server's TTL sweeper (about once a minute) deletes jobs past retention, keeps others."""
    settings = QueueSettings(mongodb_database=queue_settings.mongodb_database, retention_s=1)
    old_clock = FakeClock(datetime.now(UTC) - timedelta(minutes=10))
    store = JobStore(db, settings, clock=old_clock)
    store.ensure_indexes()
    old = _succeeded_doc(store, "old")
    store.archive([old])
    old_clock.advance(3600 + 600)  # finished an hour from now: not expired during this test
    fresh = _succeeded_doc(store, "fresh")
    store.archive([fresh])
    deadline = time.monotonic() + 150
    while store.done.find_one({"_id": old["_id"]}) is not None:
        assert time.monotonic() < deadline, "the TTL sweeper did not remove the expired job"
        time.sleep(1)
    assert store.done.find_one({"_id": fresh["_id"]}) is not None
    assert store.keys.count_documents({}) == 0
    assert store.get(str(old["_id"])) is None
    assert store.get(str(ObjectId(fresh["_id"]))) is not None
