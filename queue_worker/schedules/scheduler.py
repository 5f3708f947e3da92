"""One scheduler pass: for each schedule whose cursor is due, enqueue the due ticks' jobs, then
advance the cursor by compare-and-set. Every supervisor runs one; no leader, lock or lease.

A tick's job has the idempotency key `cron:<schedule>:<tick>` (timing.tick_key), so however many
schedulers see the same due tick, one job exists for it: the others' enqueues come back as
duplicates. The job goes in first and the cursor moves after, so a scheduler killed between the
two leaves a cursor that the next pass (its own or another's) finds due again, and the key
absorbs the repeat. Correctness rests on the unique index alone, not on clocks.

Policies (definition.py) decide which due ticks get a job:
    all     every due tick within the catch-up window (the newest max_catch_up), each its own job
    skip    the newest due tick, if it is at most ON_TIME_S late; the others are missed
    latest  one job for all due ticks: a single tick is its own job; after downtime, one catch-up
            job keyed by the oldest due tick (the cursor, the same for every scheduler) that
            stands for the ticks up to the newest (`schedule_until`). If that key already has a
            job standing for fewer ticks (another scheduler ran earlier, seeing fewer), the
            rest get a job keyed by the next tick: coverage is a chain no tick falls out of.
A job also gets `start_by` (tick + start_deadline_s: claimed later, it is cancelled unrun) and
run_at (tick + the schedule's deterministic jitter). With overlap `skip`, due ticks are skipped
while a job of the schedule is pending or running.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId

from queue_worker import metrics
from queue_worker.enqueue import EnqueueRequest
from queue_worker.errors import ConfigError
from queue_worker.job import JobState
from queue_worker.schedules.definition import Missed, Overlap, Schedule
from queue_worker.schedules.store import ScheduleStore
from queue_worker.schedules.timing import Every, shortest_gap_s, tick_key, ticks
from queue_worker.store import JobStore

log = logging.getLogger(__name__)
ON_TIME_S = 10.0  # `skip`: how late the newest tick may be and still run
MAX_DUE = 100_000  # ticks looked at in one pass (a 1-second schedule down for a day)
SUCCESS_REFRESH_S = 5.0
IDLE_S = 1.0  # a pass at least this often: other schedulers' changes, pauses, resumes


class TickOutcome(StrEnum):
    ENQUEUED = "enqueued"
    DUPLICATE = "duplicate"
    SKIPPED_OVERLAP = "skipped_overlap"
    MISSED = "missed"
    PAUSED = "paused"


def key_for(name: str, tick: datetime) -> str:
    """Return the idempotency key of the schedule's job for `tick`."""
    return f"cron:{name}:{tick_key(tick)}"


@dataclass
class Pass:
    """What one schedule's pass did: records for the schedule document, counts for metrics."""

    records: list[dict[str, Any]] = field(default_factory=list)

    def note(
        self, outcome: TickOutcome, tick: datetime, *, count: int = 1, job_id: str | None = None,
        now: datetime,
    ) -> None:  # fmt: skip
        if count <= 0:
            return
        self.records.append(
            {"tick": tick, "outcome": outcome.value, "count": count, "job_id": job_id, "at": now}
        )


class Scheduler:
    """Keep the given schedules' ticks enqueued (see the module docstring)."""

    def __init__(self, store: JobStore, schedules: Iterable[Schedule]) -> None:
        self.store = store
        self.schedules = {s.name: s for s in schedules}
        self.docs = ScheduleStore(store.db)
        self._successes_at: datetime | None = None

    # -- setup -------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise ConfigError for a schedule whose task is unknown or whose catch-up window
        outlives the memory of tick keys (QUEUE_RETENTION_S)."""
        retention = self.store.settings.retention_s
        for definition in self.schedules.values():
            if (
                self.store.registry is not None
                and self.store.registry.find(definition.task) is None
            ):
                raise ConfigError(
                    f"schedule {definition.name!r}: no task named {definition.task!r}"
                )
            if definition.catch_up_s > retention:
                raise ConfigError(
                    f"schedule {definition.name!r}: catch_up_s {definition.catch_up_s:g} is "
                    f"longer than QUEUE_RETENTION_S {retention}: a tick's key would be forgotten"
                )

    def sync(self, now: datetime) -> None:
        """Write the definitions to the `schedules` collection (see store.py)."""
        self.check()
        firsts = {name: s.timing().next_after(now) for name, s in self.schedules.items()}
        self.docs.sync(self.schedules.values(), firsts, now=now)
        for name, definition in self.schedules.items():
            gap = shortest_gap_s(definition.timing(), now, samples=50)
            metrics.SCHEDULE_INTERVAL.labels(name).set(gap if gap is not None else 0)

    # -- passes ------------------------------------------------------------------------------

    def run_once(self, now: datetime) -> datetime:
        """Deal with every due schedule; return when the next pass should run."""
        docs = self.docs.load(list(self.schedules))
        wake = now + timedelta(seconds=IDLE_S)
        for name, definition in self.schedules.items():
            doc = docs.get(name)
            if doc is None:
                continue  # not synced yet (a new schedule another node has not written)
            cursor = doc.get("next_tick")
            if cursor is None:
                self._restart_cursor(definition, now)
            elif cursor <= now:
                cursor = self.process(definition, doc, now)
            if cursor is not None and cursor < wake:
                wake = max(cursor, now)
        if self._successes_at is None or now >= self._successes_at:
            self._successes_at = now + timedelta(seconds=SUCCESS_REFRESH_S)
            self.refresh_successes(docs, now)
        return wake

    def process(self, definition: Schedule, doc: dict[str, Any], now: datetime) -> datetime | None:
        """Enqueue the due ticks of one schedule and advance its cursor; return the cursor."""
        timing = definition.timing()
        cursor: datetime = doc["next_tick"]
        after_now = timing.next_after(now)
        done = Pass()
        paused = bool(doc.get("paused"))
        until = doc.get("paused_until")
        if paused and (until is None or until > now):
            done.note(TickOutcome.PAUSED, cursor, count=_count(timing, cursor, now), now=now)
            self._advance(definition, cursor, after_now, done)
            return after_now
        due = ticks(timing, cursor, now, limit=MAX_DUE)
        if definition.overlap is Overlap.SKIP and self._running(definition.name):
            done.note(TickOutcome.SKIPPED_OVERLAP, cursor, count=len(due), now=now)
        elif definition.missed is Missed.LATEST:
            self._latest(definition, due, now, done)
        else:
            self._each(definition, due, now, done)
        self._advance(definition, cursor, after_now, done, resume=paused)
        return after_now

    def trigger(self, name: str, now: datetime) -> str:
        """Enqueue an extra run of schedule `name` now (no tick is consumed); return its id."""
        definition = self.schedules.get(name)
        if definition is None:
            raise ConfigError(f"no schedule named {name!r} in this code")
        key = f"cron:{name}:trigger:{ObjectId()}"
        job, _ = self.store.enqueue_once(self._request(definition, now, now, key, start_by=None))
        self.docs.record(name, [{"tick": now, "outcome": "triggered", "count": 1,
                                 "job_id": job.id, "at": now}])  # fmt: skip
        return job.id

    # -- policies ----------------------------------------------------------------------------

    def _latest(self, definition: Schedule, due: list[datetime], now: datetime, done: Pass) -> None:
        window_start = now - timedelta(seconds=definition.catch_up_s)
        if not due or due[-1] < window_start:
            if due:
                done.note(TickOutcome.MISSED, due[0], count=len(due), now=now)
            return
        newest, first, index = due[-1], due[0], 0
        while True:
            run_at = first if first == newest else now
            job, created = self._enqueue(definition, first, newest, run_at, now)
            if job is None:  # the start deadline has passed
                done.note(TickOutcome.MISSED, first, count=len(due) - index, now=now)
                return
            covered_until = job.schedule_until or first
            covered = sum(1 for tick in due[index:] if tick <= covered_until)
            outcome = TickOutcome.ENQUEUED if created else TickOutcome.DUPLICATE
            done.note(outcome, first, count=1, job_id=job.id, now=now)
            done.note(TickOutcome.MISSED, first, count=covered - 1, now=now)  # run once for all
            index += covered
            if index >= len(due):
                return
            first = due[index]  # the ticks after what that job stands for still need one

    def _each(self, definition: Schedule, due: list[datetime], now: datetime, done: Pass) -> None:
        if definition.missed is Missed.SKIP:
            late = [t for t in due if (now - t).total_seconds() > ON_TIME_S]
            wanted = [t for t in due[-1:] if t not in late]
        else:
            window_start = now - timedelta(seconds=definition.catch_up_s)
            wanted = [t for t in due if t >= window_start][-definition.max_catch_up :]
        skipped = len(due) - len(wanted)
        if skipped:
            done.note(TickOutcome.MISSED, due[0], count=skipped, now=now)
        for tick in wanted:
            job, created = self._enqueue(definition, tick, tick, tick, now)
            if job is None:
                done.note(TickOutcome.MISSED, tick, now=now)
                continue
            outcome = TickOutcome.ENQUEUED if created else TickOutcome.DUPLICATE
            done.note(outcome, tick, job_id=job.id, now=now)

    # -- plumbing ----------------------------------------------------------------------------

    def _enqueue(
        self, definition: Schedule, tick: datetime, until: datetime, run_at: datetime,
        now: datetime,
    ) -> tuple[Any, bool]:  # fmt: skip
        start_by = None
        if definition.start_deadline_s is not None:
            start_by = until + timedelta(seconds=definition.start_deadline_s)
            if now > start_by:
                return None, False
        request = self._request(definition, run_at, until, key_for(definition.name, tick), start_by)
        job, created = self.store.enqueue_once(request)
        if created:
            metrics.SCHEDULE_LAG.labels(definition.name).observe((now - tick).total_seconds())
        return job, created

    def _request(
        self, definition: Schedule, run_at: datetime, until: datetime, key: str,
        start_by: datetime | None,
    ) -> EnqueueRequest:  # fmt: skip
        return EnqueueRequest(
            definition.task,
            dict(definition.payload),
            queue=definition.queue,
            priority=definition.priority,
            run_at=run_at + definition.jitter(until),
            idempotency_key=key,
            start_by=start_by,
            schedule=definition.name,
            schedule_until=until,
        )

    def _running(self, name: str) -> bool:
        busy = [JobState.PENDING.value, JobState.RUNNING.value]
        return (
            self.store.jobs.find_one({"schedule": name, "state": {"$in": busy}}, {"_id": 1})
            is not None
        )

    def _advance(
        self, definition: Schedule, cursor: datetime, next_tick: datetime | None, done: Pass,
        *, resume: bool = False,
    ) -> None:  # fmt: skip
        moved = self.docs.advance(definition.name, cursor, next_tick, done.records, resume=resume)
        if not moved:
            return  # another scheduler moved it first; its records tell the story
        for record in done.records:
            metrics.SCHEDULE_TICKS.labels(definition.name, record["outcome"]).inc(record["count"])

    def _restart_cursor(self, definition: Schedule, now: datetime) -> None:
        """A cursor with no next tick (its old definition never fired again) starts anew."""
        first = definition.timing().next_after(now)
        if first is not None:
            self.docs.collection.update_one(
                {"_id": definition.name, "next_tick": None}, {"$set": {"next_tick": first}}
            )

    def refresh_successes(self, docs: dict[str, dict[str, Any]], now: datetime) -> None:
        """Record when each schedule's newest recorded job succeeded, and export it."""
        for name, doc in docs.items():
            ids = [
                ObjectId(r["job_id"]) for r in doc.get("last_ticks", ())
                if r.get("job_id") and r.get("outcome") in ("enqueued", "duplicate", "triggered")
            ]  # fmt: skip
            newest = doc.get("last_success_at")
            for collection in self.store.locations(JobState.SUCCEEDED):
                for job in collection.find(
                    {"_id": {"$in": ids}, "state": JobState.SUCCEEDED.value}, {"finished_at": 1}
                ):
                    if newest is None or job["finished_at"] > newest:
                        newest = job["finished_at"]
            if newest is not None and newest != doc.get("last_success_at"):
                self.docs.record_success(name, newest)
            since = newest or doc.get("created_at") or now
            metrics.SCHEDULE_LAST_SUCCESS.labels(name).set(since.timestamp())


def _count(timing: Any, start: datetime, end: datetime) -> int:
    if isinstance(timing, Every):
        return timing.count_between(start, end)
    return len(ticks(timing, start, end, limit=MAX_DUE))
