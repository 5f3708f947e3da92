"""Enqueue, batch enqueue, get, and idempotency keys (threads, processes, archived jobs)."""

from __future__ import annotations

import argparse
import multiprocessing
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import queue_procs
from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.database import Database
from queue_helpers import FakeClock, live_count, metric

from queue_worker.errors import ConfigError, InvalidJobError, UnknownTaskError
from queue_worker.idempotency import KEY_HOLD_S
from queue_worker.job import JobState
from queue_worker.settings import QueueSettings
from queue_worker.store import EnqueueRequest, JobStore
from queue_worker.tasks import TaskRegistry
from runtime.env import SettingsError


def test_enqueue_stores_a_pending_job_with_settings_defaults(
    job_store: JobStore, fake_clock: FakeClock, queue_settings: QueueSettings
) -> None:
    """A new job is pending, due now, with the settings' queue, attempts and timeout."""
    before = metric("queue_jobs_enqueued_total", queue="default", task="t.defaults")
    job = job_store.enqueue("t.defaults", {"x": 1}, submitted_by="user-1")
    assert job.state is JobState.PENDING
    assert (job.queue, job.priority, job.attempts) == ("default", 0, 0)
    assert job.max_attempts == queue_settings.max_attempts
    assert job.timeout_s == queue_settings.timeout_s
    assert job.run_at == fake_clock.now and job.run_at.tzinfo is not None
    assert job.submitted_by == "user-1"
    assert job_store.get(job.id) == job
    assert metric("queue_jobs_enqueued_total", queue="default", task="t.defaults") == before + 1


def test_enqueue_options_override_defaults(job_store: JobStore, fake_clock: FakeClock) -> None:
    """queue, priority, delay, max attempts and timeout given to enqueue are stored."""
    job = job_store.enqueue(
        "t", queue="mail", priority=7, delay_s=90, max_attempts=9, timeout_s=12.5
    )
    assert (job.queue, job.priority, job.max_attempts, job.timeout_s) == ("mail", 7, 9, 12.5)
    assert job.run_at == fake_clock.now + timedelta(seconds=90)
    at = datetime(2030, 1, 1, tzinfo=UTC)
    assert job_store.enqueue("t", run_at=at).run_at == at


def test_registry_supplies_per_task_defaults(
    db: Database[Any], queue_settings: QueueSettings
) -> None:
    """With a registry, a task's own defaults apply and unknown task names are refused."""
    registry = TaskRegistry()
    registry.task("mail.send", queue="mail", max_attempts=8, timeout_s=20, priority=5)(
        lambda payload, ctx: None
    )
    store = JobStore(db, queue_settings, registry=registry)
    job = store.enqueue("mail.send")
    assert (job.queue, job.max_attempts, job.timeout_s, job.priority) == ("mail", 8, 20.0, 5)
    assert store.enqueue("mail.send", queue="other").queue == "other"
    with pytest.raises(UnknownTaskError):
        store.enqueue("no.such.task")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"payload": {"when": object()}},
        {"payload": {"x": float("nan")}},
        {"delay_s": -1},
        {"run_at": datetime(2030, 1, 1)},
        {"delay_s": 1, "run_at": datetime(2030, 1, 1, tzinfo=UTC)},
        {"priority": "high"},
        {"max_attempts": 0},
        {"timeout_s": 0},
        {"idempotency_key": ""},
        {"queue": ""},
    ],
)
def test_enqueue_rejects_arguments_that_cannot_make_a_job(
    job_store: JobStore, kwargs: dict[str, Any]
) -> None:
    """Bad enqueue arguments raise InvalidJobError and store nothing."""
    with pytest.raises(InvalidJobError):
        job_store.enqueue("t", **kwargs)
    assert live_count(job_store) == 0


def test_enqueue_many_returns_jobs_in_request_order(job_store: JobStore) -> None:
    """A batch stores every job and returns them in the order requested, keyed ones included."""
    jobs = job_store.enqueue_many(
        [
            EnqueueRequest("a"),
            {"task": "b", "priority": 2},
            EnqueueRequest("c", idempotency_key="k-c"),
            EnqueueRequest("d"),
        ]
    )
    assert [j.task for j in jobs] == ["a", "b", "c", "d"]
    assert live_count(job_store, {"state": "pending"}) == 4
    assert all(job_store.get(j.id) == j for j in jobs)
    with pytest.raises(InvalidJobError):
        job_store.enqueue_many([{"task": "x", "colour": "red"}])


def test_get_returns_none_for_malformed_or_unknown_ids(job_store: JobStore) -> None:
    """get() answers None for an id that is not an ObjectId or names no job."""
    assert job_store.get("not-an-id") is None
    assert job_store.get(str(ObjectId())) is None


def test_same_key_returns_the_same_job(job_store: JobStore) -> None:
    """A second enqueue with a key returns the first job and creates nothing."""
    first = job_store.enqueue("keyed", {"n": 1}, idempotency_key="order-1")
    second = job_store.enqueue("keyed", {"n": 2}, idempotency_key="order-1")
    assert second == first
    assert job_store.jobs.count_documents({"idempotency_key": "order-1"}) == 1
    claimable = job_store.jobs.find_one({"_id": ObjectId(first.id)})
    assert claimable is not None and "hold_run_at" not in claimable


def test_concurrent_enqueues_with_one_key_create_one_job_threads(job_store: JobStore) -> None:
    """12 threads enqueueing one key at once create exactly one job and all get its id."""
    barrier = threading.Barrier(12)
    ids: list[str] = []

    def enqueue() -> None:
        barrier.wait()
        ids.append(job_store.enqueue("keyed", idempotency_key="same").id)

    threads = [threading.Thread(target=enqueue) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 12 and len(set(ids)) == 1
    assert job_store.jobs.count_documents({"idempotency_key": "same"}) == 1


def test_concurrent_enqueues_with_one_key_create_one_job_processes(
    job_store: JobStore, mongo_uri: str, db_name: str
) -> None:
    """4 processes, each with its own client, enqueueing one key create exactly one job."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=queue_procs.enqueue_with_key, args=(mongo_uri, db_name, "p-key", barrier, out)
        )
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    ids = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert len(set(ids)) == 1
    assert job_store.jobs.count_documents({"idempotency_key": "p-key"}) == 1


def test_key_of_a_finished_archived_job_returns_that_job(job_store: JobStore) -> None:
    """Once the keyed job finished and moved to jobs_done, the key still returns it."""
    job = job_store.enqueue("keyed", idempotency_key="done-key")
    held = job_store.claim("w")
    assert held is not None
    final = job_store.succeed(held, {"ok": True})
    assert final is not None and job_store.archive([final]) == 1
    again = job_store.enqueue("keyed", idempotency_key="done-key")
    assert again.id == job.id and again.state is JobState.SUCCEEDED
    assert job_store.jobs.count_documents({}) == 0


def test_key_mid_archive_returns_the_finished_job_either_side_of_the_delete(
    job_store: JobStore,
) -> None:
    """While the archiver has copied but not yet deleted a keyed job, and just after, the key
    resolves to that job and no second job survives."""
    job = job_store.enqueue("keyed", idempotency_key="race")
    held = job_store.claim("w")
    assert held is not None
    final = job_store.succeed(held, None)
    assert final is not None
    # Archiver steps 1 and 2 (marker, copy) without step 3 (delete from jobs):
    job_store.keys.insert_one(
        {"_id": "race", "job_id": final["_id"], "finished_at": final["finished_at"]}
    )
    job_store.done.insert_one(final)
    assert job_store.enqueue("keyed", idempotency_key="race").id == job.id
    # Step 3: the enqueue now wins the unique index, then finds the marker and withdraws.
    job_store.jobs.delete_one({"_id": final["_id"]})
    assert job_store.enqueue("keyed", idempotency_key="race").id == job.id
    assert job_store.jobs.count_documents({}) == 0


def insert_held(store: JobStore, key: str, now: datetime) -> ObjectId:
    """Store a keyed job as an enqueuer leaves it between its insert and its key check."""
    oid = ObjectId()
    store.jobs.insert_one(
        {
            "_id": oid, "queue": "default", "task": "keyed", "payload": {}, "state": "pending",
            "priority": 0, "run_at": now + timedelta(seconds=KEY_HOLD_S), "hold_run_at": now,
            "attempts": 0, "max_attempts": 3, "timeout_s": 10.0, "created_at": now,
            "crashes": 0, "rescues": 0, "idempotency_key": key,
        }
    )  # fmt: skip
    return oid


def test_a_held_keyed_job_is_reported_with_its_intended_run_at(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    """A loser that meets a job still held by its enqueuer returns it, due when intended; a held
    job whose enqueuer died still becomes claimable after the hold."""
    now = fake_clock.now
    oid = insert_held(job_store, "held", now)
    job = job_store.enqueue("keyed", idempotency_key="held")
    assert job.id == str(oid) and job.run_at == now
    assert job_store.claim("w") is None
    fake_clock.advance(KEY_HOLD_S)
    held = job_store.claim("w")
    assert held is not None and held.job.id == str(oid)


def test_a_held_copy_left_by_a_timed_out_enqueuer_is_withdrawn_by_the_next_enqueue(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    """An enqueuer that timed out after its insert leaves a held copy of a key that already has
    a finished job; the next enqueue of the key answers the finished job and deletes the copy."""
    job = job_store.enqueue("keyed", idempotency_key="tick-1")
    final = job_store.jobs.find_one_and_update(
        {"_id": ObjectId(job.id)},
        {"$set": {"state": "succeeded", "finished_at": fake_clock.now}},
        return_document=ReturnDocument.AFTER,
    )
    assert final is not None and job_store.archive([final]) == 1
    copy = insert_held(job_store, "tick-1", fake_clock.now)
    assert job_store.enqueue("keyed", idempotency_key="tick-1").id == job.id
    assert job_store.jobs.count_documents({"_id": copy}) == 0


@pytest.mark.parametrize("name", ["a b", "mail$", "x" * 101, "", "a/b", "é", "a\x00"])
def test_one_queue_name_rule_is_checked_everywhere_a_name_enters(
    job_store: JobStore, name: str
) -> None:
    """A queue name is checked by the one rule wherever it enters (enqueue, settings, a task's
    declaration, the CLI and the supervisor's lists), and the refusal names that rule."""
    from queue_worker.cli.base import queue_list
    from runtime import names
    from supervisor.settings import load_settings

    with pytest.raises(InvalidJobError, match=re.escape(names.RULE)):
        job_store.enqueue("t", queue=name)
    with pytest.raises(ConfigError, match=re.escape(names.RULE)):
        TaskRegistry().task("t", queue=name)
    if name.strip():  # a blank setting or list item means "not given"
        with pytest.raises(ConfigError, match=re.escape(names.RULE)):
            QueueSettings.from_env({"QUEUE_DEFAULT_QUEUE": name})
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(names.RULE)):
            queue_list(f"default,{name}")
        with pytest.raises(SettingsError, match=re.escape(names.RULE)):
            load_settings([], {"SUPERVISOR_QUEUES": f"default,{name}"})
    assert live_count(job_store) == 0


def test_a_name_the_rule_allows_is_accepted_everywhere(job_store: JobStore) -> None:
    """`reports.v2-eu_1` passes every check the refusals above come from."""
    from queue_worker.cli.base import queue_list

    name = "reports.v2-eu_1"
    assert job_store.enqueue("t", queue=name).queue == name
    assert QueueSettings.from_env({"QUEUE_DEFAULT_QUEUE": name}).default_queue == name
    assert queue_list(f"default, {name}") == ["default", name]
