"""The consumers' per-minute outcome counters (queue_worker.tally): what the dashboard charts
instead of counting `jobs_done`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from queue_helpers import T0, FakeClock, wait_until

from queue_worker import layout, tally
from queue_worker.consumer import Consumer
from queue_worker.errors import NonRetryableError
from queue_worker.store import JobStore
from queue_worker.tasks import TaskContext, TaskRegistry


def registry() -> TaskRegistry:
    reg = TaskRegistry()
    reg.task("ok")(lambda payload, ctx: None)

    def flaky(payload: dict[str, Any], ctx: TaskContext) -> None:
        raise ValueError("try again")

    def refuse(payload: dict[str, Any], ctx: TaskContext) -> None:
        raise NonRetryableError("never")

    reg.task("flaky")(flaky)
    reg.task("refuse")(refuse)
    return reg


def test_a_consumer_counts_successes_retries_and_deaths_per_minute_and_queue(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    """A consumer's outcomes reach job_counts per minute, queue and outcome by its last flush."""
    job_store.enqueue_many([{"task": "ok"}, {"task": "ok", "queue": "mail"},
                            {"task": "flaky"}, {"task": "refuse"}])  # fmt: skip
    worker = Consumer(job_store, registry(), job_store.settings, owner="t:1", clock=fake_clock,
                      queues=["default", "mail"], concurrency=4)  # fmt: skip
    worker.run_once(fake_clock.now)
    wait_until(lambda: worker.run_once(fake_clock.now) >= 0 and worker.slots.active == [])
    worker.drain(timeout_s=5)  # a clean exit writes the last counts
    series, per_queue = tally.per_minute(job_store.db, fake_clock.now + timedelta(seconds=1))
    assert per_queue == {
        "default": {"succeeded": 1, "failed": 1, "dead": 1},
        "mail": {"succeeded": 1, "failed": 0, "dead": 0},
    }
    assert [sum(values) for values in series.values()] == [2, 1, 1]
    assert series["succeeded"][-1] == 2 and len(series["succeeded"]) == 60


def test_flushes_add_up_and_old_minutes_fall_out_of_the_window(job_store: JobStore) -> None:
    """Flushes add to the same minute; minutes outside the last hour are not read."""
    counts = tally.Tally()
    counts.add("default", "succeeded", T0)
    counts.add("default", "succeeded", T0 + timedelta(seconds=30))
    assert counts.flush(job_store.db) == 1
    counts.add("default", "succeeded", T0 + timedelta(seconds=59))
    counts.add("default", "dead", T0 - timedelta(hours=2))
    assert counts.flush(job_store.db) == 2
    assert counts.flush(job_store.db) == 0  # nothing new: no round trip
    series, per_queue = tally.per_minute(job_store.db, T0)
    assert series["succeeded"][-1] == 3 and sum(series["dead"]) == 0
    assert per_queue["default"]["succeeded"] == 3


def test_handler_threads_count_at_once_without_losing_any(job_store: JobStore) -> None:
    """2,000 counts from 8 threads at once are all written."""
    counts = tally.Tally()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: counts.add("default", "succeeded", T0), range(2000)))
    counts.flush(job_store.db)
    assert job_store.db[layout.COUNTS].find_one()["n"] == 2000


def test_counts_are_forgotten_by_a_ttl_index(job_store: JobStore) -> None:
    """Counters expire by a TTL index after KEEP_S."""
    index = job_store.db[layout.COUNTS].index_information()["minute_ttl"]
    assert index["expireAfterSeconds"] == tally.KEEP_S
