"""Wake-ups by change stream: an idle consumer whose polling has backed off far still starts a
new job at once, a delayed job on time, and a broken stream leaves polling working."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
from pymongo.errors import ConnectionFailure
from queue_helpers import metric, wait_until

from queue_worker.consumer import Consumer
from queue_worker.job import JobState
from queue_worker.layout import BACKLOG, JOBS
from queue_worker.store import JobStore
from queue_worker.tasks import TaskRegistry
from queue_worker.wakeup import StreamWakeup

SLOW_POLL_S = 3600.0  # polling alone would take this long after an empty claim


@pytest.fixture
def real_time_store(job_store: JobStore) -> JobStore:
    return JobStore(job_store.db, job_store.settings)  # wall clock: the stream is real time


@contextmanager
def running(store: JobStore, wakeup: StreamWakeup) -> Iterator[Consumer]:
    registry = TaskRegistry()
    registry.task("t")(lambda payload, ctx: None)
    consumer = Consumer(store, registry, store.settings, owner="test:1", wakeup=wakeup)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    try:
        yield consumer
    finally:
        consumer.request_stop()
        wakeup.wake()
        thread.join(10)


def slow_polling(store: JobStore) -> StreamWakeup:
    return StreamWakeup(
        store.db, ["default"], SLOW_POLL_S, backlog=BACKLOG, jobs=JOBS, min_s=SLOW_POLL_S
    )


def succeeded(store: JobStore, job_id: str) -> bool:
    job = store.get(job_id)
    return job is not None and job.state is JobState.SUCCEEDED


def backed_off(wakeup: StreamWakeup) -> datetime | None:
    """When polling would claim next, once the consumer's claims came back empty and the stream
    has nothing to announce (None before)."""
    return wakeup.next_claim_at()


def test_a_new_job_starts_at_once_though_polling_backed_off(real_time_store: JobStore) -> None:
    """With polling backed off for an hour, a new job is claimed because the stream announced
    it: it starts before the poll would have come, and the wake-up is counted as the stream's."""
    wakeup = slow_polling(real_time_store)
    with running(real_time_store, wakeup):
        wait_until(lambda: wakeup.healthy, what="the stream")
        poll_at = wait_until(lambda: backed_off(wakeup), what="the empty claims to back off")
        heard = metric("queue_wakeups_total", source="stream")
        job = real_time_store.enqueue("t")
        wait_until(lambda: succeeded(real_time_store, job.id), what="the job")
        done = real_time_store.get(job.id)
        assert done is not None and done.started_at is not None
        assert done.started_at < poll_at  # not the poll
        assert metric("queue_wakeups_total", source="stream") > heard


def test_a_delayed_job_starts_when_due_by_its_timer(real_time_store: JobStore) -> None:
    """A job announced for later sets a timer: it starts at its run_at, not before, and long
    before the backed-off poll; the wake-up is counted as the timer's."""
    wakeup = slow_polling(real_time_store)
    with running(real_time_store, wakeup):
        wait_until(lambda: wakeup.healthy, what="the stream")
        poll_at = wait_until(lambda: backed_off(wakeup), what="the empty claims to back off")
        timed = metric("queue_wakeups_total", source="timer")
        job = real_time_store.enqueue("t", delay_s=0.2)
        wait_until(lambda: succeeded(real_time_store, job.id), what="the delayed job")
        done = real_time_store.get(job.id)
        assert done is not None and done.started_at is not None
        assert done.run_at <= done.started_at < poll_at
        assert metric("queue_wakeups_total", source="timer") > timed


class NoStreams:
    """A database whose change streams always fail (a standalone server, a broken stream)."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def watch(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionFailure("no change streams here")


def test_without_a_stream_polling_still_finds_work(real_time_store: JobStore) -> None:
    """A server without change streams (a standalone mongod, a broken stream): no stream ever
    starts, and polling alone finds and runs the job."""
    started = metric("queue_job_stream_starts_total", kind="first")
    wakeup = StreamWakeup(
        NoStreams(real_time_store.db), ["default"], 0.2, backlog=BACKLOG, jobs=JOBS
    )
    with running(real_time_store, wakeup):
        job = real_time_store.enqueue("t")
        wait_until(lambda: succeeded(real_time_store, job.id), what="the job, by polling")
        assert not wakeup.healthy
        assert metric("queue_job_stream_starts_total", kind="first") == started
