"""The scheduler against a real database with a fake clock: one job per tick however many
schedulers run, crashes between the enqueue and the cursor, the policies after downtime, overlap,
pauses, start deadlines, jitter, triggers and definition changes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from queue_helpers import T0, FakeClock, metric, wait_until

from queue_worker.consumer import Consumer
from queue_worker.errors import ConfigError
from queue_worker.job import JobState
from queue_worker.schedules import Schedule
from queue_worker.schedules.scheduler import Scheduler, key_for
from queue_worker.schedules.store import ScheduleStore
from queue_worker.store import JobStore
from queue_worker.tasks import TaskRegistry

S = timedelta(seconds=1)


def every(name: str = "beat", **options: Any) -> Schedule:
    options.setdefault("overlap", "allow")
    return Schedule(name, "quick", every_s=options.pop("every_s", 1), **options)


def started(store: JobStore, *definitions: Schedule, now: datetime = T0) -> Scheduler:
    scheduler = Scheduler(store, definitions)
    scheduler.sync(now)
    return scheduler


def jobs_of(store: JobStore, name: str) -> list[dict[str, Any]]:
    """The schedule's jobs wherever they are, oldest key first."""
    found = [d for c in store.in_move_order for d in c.find({"schedule": name})]
    return sorted(found, key=lambda d: d["idempotency_key"])


def cursor(store: JobStore, name: str = "beat") -> datetime:
    doc = ScheduleStore(store.db).get(name)
    assert doc is not None
    value: datetime = doc["next_tick"]
    return value


def test_a_new_schedule_starts_at_its_next_tick(job_store: JobStore) -> None:
    started(job_store, every(every_s=60), now=T0 + 7 * S)
    assert cursor(job_store) == T0 + 60 * S


def test_three_schedulers_make_one_job_per_tick(job_store: JobStore) -> None:
    """Every scheduler sees each tick; the unique key lets one job exist for it."""
    schedulers = [started(job_store, every("beat")) for _ in range(3)]
    for second in range(1, 11):
        now = T0 + second * S
        docs = ScheduleStore(job_store.db).load(["beat"])  # all read before any writes
        for scheduler in schedulers:
            scheduler.process(scheduler.schedules["beat"], docs["beat"], now)
    keys = [d["idempotency_key"] for d in jobs_of(job_store, "beat")]
    assert keys == [key_for("beat", T0 + n * S) for n in range(1, 11)]
    assert cursor(job_store) == T0 + 11 * S


def test_a_crash_between_enqueue_and_cursor_is_absorbed_by_the_key(job_store: JobStore) -> None:
    scheduler = started(job_store, every())
    real_advance = scheduler.docs.advance
    scheduler.docs.advance = lambda *a, **k: (_ for _ in ()).throw(SystemExit("killed"))  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        scheduler.run_once(T0 + S)
    assert cursor(job_store) == T0 + S  # the job is in, the cursor did not move
    scheduler.docs.advance = real_advance  # type: ignore[method-assign]
    duplicates = metric("queue_schedule_ticks_total", schedule="beat", outcome="duplicate")
    scheduler.run_once(T0 + S)
    assert len(jobs_of(job_store, "beat")) == 1
    assert (
        metric("queue_schedule_ticks_total", schedule="beat", outcome="duplicate") == duplicates + 1
    )
    assert cursor(job_store) == T0 + 2 * S


def test_latest_enqueues_one_catch_up_job_after_downtime(job_store: JobStore) -> None:
    scheduler = started(job_store, every())
    scheduler.run_once(T0 + 20 * S)
    [job] = jobs_of(job_store, "beat")
    assert job["idempotency_key"] == key_for("beat", T0 + S)  # the cursor: same on every node
    assert job["schedule_until"] == T0 + 20 * S
    assert job["run_at"] == T0 + 20 * S
    assert cursor(job_store) == T0 + 21 * S


def test_latest_races_leave_no_tick_uncovered(job_store: JobStore) -> None:
    """A scheduler with a stale cursor finds the earlier scheduler's job standing for fewer
    ticks, and gives the rest a job of their own."""
    early, late = started(job_store, every()), started(job_store, every())
    stale = ScheduleStore(job_store.db).load(["beat"])["beat"]  # cursor T0+1
    early.run_once(T0 + S)  # one tick due: its own job
    late.process(late.schedules["beat"], stale, T0 + 3 * S)  # sees ticks 1..3 due
    jobs = jobs_of(job_store, "beat")
    assert [(j["idempotency_key"], j["schedule_until"]) for j in jobs] == [
        (key_for("beat", T0 + S), T0 + S),
        (key_for("beat", T0 + 2 * S), T0 + 3 * S),
    ]


def test_all_enqueues_each_missed_tick_once_within_the_window(job_store: JobStore) -> None:
    scheduler = started(job_store, every(missed="all", catch_up_s=10, max_catch_up=8))
    missed = metric("queue_schedule_ticks_total", schedule="beat", outcome="missed")
    scheduler.run_once(T0 + 20 * S)
    keys = [d["idempotency_key"] for d in jobs_of(job_store, "beat")]
    assert keys == [key_for("beat", T0 + n * S) for n in range(13, 21)]  # the newest 8
    assert metric("queue_schedule_ticks_total", schedule="beat", outcome="missed") == missed + 12
    scheduler.run_once(T0 + 20 * S)  # nothing due any more
    assert len(jobs_of(job_store, "beat")) == 8


def test_skip_runs_only_a_tick_that_is_on_time(job_store: JobStore) -> None:
    scheduler = started(job_store, every(missed="skip", every_s=60))
    scheduler.run_once(T0 + 60 * S + 2 * S)  # two seconds late: on time
    scheduler.run_once(T0 + 300 * S)  # four ticks due, the newest on time
    scheduler.run_once(T0 + 480 * S + 30 * S)  # the one due tick is 30 s late: skipped
    keys = [d["idempotency_key"] for d in jobs_of(job_store, "beat")]
    assert keys == [key_for("beat", T0 + 60 * S), key_for("beat", T0 + 300 * S)]


def test_overlap_skip_waits_for_the_previous_run(job_store: JobStore) -> None:
    scheduler = started(job_store, every(overlap="skip"))
    scheduler.run_once(T0 + S)
    scheduler.run_once(T0 + 2 * S)  # the first job is still pending
    assert len(jobs_of(job_store, "beat")) == 1
    job_store.jobs.update_many({"schedule": "beat"}, {"$set": {"state": "succeeded"}})
    scheduler.run_once(T0 + 3 * S)
    assert len(jobs_of(job_store, "beat")) == 2


def test_pause_skips_ticks_and_resume_starts_after_now(job_store: JobStore) -> None:
    scheduler = started(job_store, every())
    docs = ScheduleStore(job_store.db)
    docs.pause("beat", None)
    scheduler.run_once(T0 + 5 * S)
    assert jobs_of(job_store, "beat") == [] and cursor(job_store) == T0 + 6 * S
    docs.resume("beat", scheduler.schedules["beat"].timing().next_after(T0 + 9 * S), now=T0 + 9 * S)
    scheduler.run_once(T0 + 10 * S)
    keys = [d["idempotency_key"] for d in jobs_of(job_store, "beat")]
    assert keys == [key_for("beat", T0 + 10 * S)]  # not the ticks of the pause


def test_a_pause_with_an_end_resumes_by_itself(job_store: JobStore) -> None:
    scheduler = started(job_store, every())
    ScheduleStore(job_store.db).pause("beat", T0 + 3 * S)
    scheduler.run_once(T0 + 2 * S)  # ticks 1 and 2 fall in the pause
    scheduler.run_once(T0 + 4 * S)  # ticks 3 and 4 do not: one catch-up job for both
    jobs = jobs_of(job_store, "beat")
    assert [(j["idempotency_key"], j["schedule_until"]) for j in jobs] == [
        (key_for("beat", T0 + 3 * S), T0 + 4 * S)
    ]
    assert ScheduleStore(job_store.db).get("beat")["paused"] is False  # type: ignore[index]


def test_jitter_moves_run_at_but_never_the_key(job_store: JobStore) -> None:
    definition = every(every_s=60, jitter_s=30)
    started(job_store, definition).run_once(T0 + 60 * S)
    [job] = jobs_of(job_store, "beat")
    assert job["idempotency_key"] == key_for("beat", T0 + 60 * S)
    assert job["run_at"] == T0 + 60 * S + definition.jitter(T0 + 60 * S)


def test_a_job_not_started_by_its_deadline_is_cancelled_unrun(
    job_store: JobStore, fake_clock: FakeClock
) -> None:
    ran: list[int] = []
    tasks = TaskRegistry()
    tasks.task("quick")(lambda payload, ctx: ran.append(1))
    started(job_store, every(every_s=60, start_deadline_s=30)).run_once(T0 + 60 * S)
    fake_clock.now = T0 + 95 * S  # 35 s after the tick
    consumer = Consumer(job_store, tasks, job_store.settings, owner="test:1", clock=fake_clock)
    consumer.run_once(fake_clock.now)
    wait_until(lambda: all(slot.finished for slot in consumer.slots.active))
    [job] = jobs_of(job_store, "beat")
    assert job["state"] == JobState.CANCELLED.value and ran == []
    assert job["attempts"] == 0 and "start_by" in job["last_error"]


def test_a_tick_already_past_its_deadline_is_not_enqueued(job_store: JobStore) -> None:
    started(job_store, every(every_s=60, start_deadline_s=30, missed="all")).run_once(T0 + 200 * S)
    keys = [d["idempotency_key"] for d in jobs_of(job_store, "beat")]
    assert keys == [key_for("beat", T0 + 180 * S)]  # 60 and 120 are past their deadline


def test_trigger_adds_a_run_without_consuming_a_tick(job_store: JobStore) -> None:
    scheduler = started(job_store, every(every_s=60))
    job_id = scheduler.trigger("beat", T0 + 5 * S)
    assert job_store.get(job_id) is not None and cursor(job_store) == T0 + 60 * S
    with pytest.raises(ConfigError):
        scheduler.trigger("nope", T0)


def test_a_changed_definition_keeps_its_cursor_and_a_removed_one_is_flagged(
    job_store: JobStore,
) -> None:
    started(job_store, every(every_s=60), every("other"))
    started(job_store, every(every_s=300), now=T0 + 10 * S)
    docs = {d["_id"]: d for d in ScheduleStore(job_store.db).all()}
    assert docs["beat"]["next_tick"] == T0 + 60 * S and docs["beat"]["definition"]["every_s"] == 300
    assert docs["other"]["removed"] is True and docs["beat"]["removed"] is False


def test_a_catch_up_window_beyond_the_key_memory_is_refused(job_store: JobStore) -> None:
    too_long = every(catch_up_s=job_store.settings.retention_s + 1)
    with pytest.raises(ConfigError, match="QUEUE_RETENTION_S"):
        Scheduler(job_store, [too_long]).check()
