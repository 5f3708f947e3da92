"""The jobs one consumer process runs at once: a thread per job, and what the loop does for them.

Who writes what: a job's own thread writes a failure right after its handler returns, so the
loop can claim the next job meanwhile; a success it hands to the loop, which writes the
successes of every job that finished since its last pass in one bulk write (`flush_acks`,
lease.succeed_many; one job's alone is a single update). The loop writes heartbeats, timeouts and
releases. A per-slot lock orders these so a heartbeat never races the outcome of the same job;
the lease token fences everything else (other processes, stale workers).

A slot ends in one of three ways, and then nobody writes for it again:
    finished  its thread is done (outcome written, or not ours to write)
    given_up  the loop timed it out or released it; a thread still running writes nothing
    lost      a heartbeat found the lease gone: nobody writes anything

Timeouts: a thread cannot be killed. A job past its timeout_s is failed through its lease token
(a failed attempt, retried with backoff), its thread is abandoned (a daemon that can no longer
write about the job) and its slot is freed at once; `needs_replacement` becomes True so a
supervisor replaces the process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from pymongo.errors import PyMongoError

from queue_worker.job import Job, JobState
from queue_worker.lease import Lease
from queue_worker.outcome import Expired, Failed, Outcome, Succeeded, run_handler
from queue_worker.settings import QueueSettings
from queue_worker.store import Clock, Doc, JobStore
from queue_worker.tasks import Resource, Resources, TaskRegistry, TaskSpec

log = logging.getLogger(__name__)
T = TypeVar("T")


class JobContext:
    """What a running handler sees (tasks.TaskContext): its job, stop flag and resources."""

    def __init__(self, held: Lease, spec: TaskSpec | None, resources: Resources) -> None:
        self.job: Job = held.job
        self.job_id = held.job.id
        self.attempt = held.job.attempts
        self.lease_token = held.token
        self._spec = spec
        self._resources = resources
        self._stop = threading.Event()

    def should_stop(self) -> bool:
        """Return True once the lease is lost, the timeout passed, or the job is being released."""
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    def resource(self, key: Resource[T]) -> T:
        """Return the process's instance of a resource this job's task declared."""
        assert self._spec is not None  # a job without a spec never reaches its handler
        return self._resources.get(key, self._spec)


@dataclass(eq=False)
class Slot:
    """One running job: its lease, context, thread and the times the loop acts on."""

    held: Lease
    ctx: JobContext
    deadline: datetime
    next_heartbeat: datetime
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    finished: bool = False
    given_up: bool = False
    lost: bool = False
    succeeded: Succeeded | None = None  # the handler returned; the loop writes it next pass

    @property
    def ended(self) -> bool:
        return self.finished or self.given_up or self.lost


class Slots:
    """Start, watch and end the jobs of one process; see the module docstring."""

    def __init__(
        self,
        store: JobStore,
        registry: TaskRegistry,
        resources: Resources,
        settings: QueueSettings,
        *,
        clock: Clock,
        on_succeeded: Callable[[Doc], None],
        on_finished: Callable[[], None],
        on_failed: Callable[[str, str], None] = lambda queue, outcome: None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.resources = resources
        self.settings = settings
        self.clock = clock
        self._on_succeeded = on_succeeded
        self._on_finished = on_finished
        self._on_failed = on_failed  # (queue, "failed" | "dead") after a recorded failure
        self.active: list[Slot] = []
        self.abandoned: list[threading.Thread] = []
        self.jobs_finished = 0
        self.needs_replacement = False

    def __len__(self) -> int:
        return len(self.active)

    def running_tasks(self) -> list[str]:
        """Return the task names of the jobs running now (one per busy slot)."""
        return [slot.held.job.task for slot in self.active]

    def suspect_running(self) -> bool:
        return any(slot.held.suspect for slot in self.active)

    def abandoned_threads(self) -> int:
        """Return how many timed-out handler threads are still running."""
        self.abandoned = [t for t in self.abandoned if t.is_alive()]
        return len(self.abandoned)

    def next_due(self) -> datetime | None:
        """Return the earliest heartbeat or deadline of a running job."""
        return min((min(s.deadline, s.next_heartbeat) for s in self.active), default=None)

    # -- the loop's steps --------------------------------------------------------------------

    def start(self, held: Lease, now: datetime) -> None:
        """Run a claimed job in a thread of its own."""
        spec = self.registry.find(held.job.task)
        slot = Slot(
            held=held,
            ctx=JobContext(held, spec, self.resources),
            deadline=now + timedelta(seconds=held.job.timeout_s),
            next_heartbeat=now + timedelta(seconds=self.settings.heartbeat_s),
        )
        self.active.append(slot)
        if held.rescued and held.job.attempts > held.job.max_attempts:
            # Its last attempt died with its worker: nothing left to try.
            self._finish(slot, Failed("lease expired during the last attempt"))
            return
        if held.job.start_by is not None and now > held.job.start_by:
            self._finish(slot, Expired())  # too late to be wanted: cancelled, not run
            return
        if "hold_run_at" in held.doc and (earlier := self._superseded_by(held)) is not None:
            self._finish(slot, Expired(f"a duplicate of job {earlier}, which has its key"))
            return
        slot.thread = threading.Thread(
            target=lambda: self._finish(slot, run_handler(spec, held.job, slot.ctx)),
            name=f"job-{held.job.id}",
            daemon=True,
        )
        slot.thread.start()

    def _superseded_by(self, held: Lease) -> str | None:
        try:
            return self.store.superseded_by(held)
        except PyMongoError:
            return None  # run it: at least once, as before

    def reap(self) -> None:
        """Forget slots whose thread has finished."""
        keep: list[Slot] = []
        for slot in self.active:
            if slot.finished:
                self.jobs_finished += 1
            else:
                keep.append(slot)
        self.active = keep

    def flush_acks(self, now: datetime) -> None:
        """Write the successes handed over since the last pass: one bulk write for them all."""
        waiting = [slot for slot in self.active if slot.succeeded is not None]
        if not waiting:
            return
        items = [(slot.held, slot.succeeded.result) for slot in waiting if slot.succeeded]
        try:
            if len(items) == 1:
                finals = [self.store.succeed(items[0][0], items[0][1], now=now)]
            else:
                finals = self.store.succeed_many(items, now=now)
        except PyMongoError:
            log.exception("recording %d successes failed; their leases will expire", len(items))
            finals = [None] * len(items)
        for slot, final in zip(waiting, finals, strict=True):
            if final is not None:
                self._on_succeeded(final)
            slot.succeeded = None
            slot.finished = True

    def tend(self, now: datetime) -> None:
        """Time out jobs past their deadline; heartbeat the others when due."""
        for slot in list(self.active):
            if now >= slot.deadline:
                self._time_out(slot, now)
            elif now >= slot.next_heartbeat:
                self._heartbeat(slot, now)

    def release_all(self) -> int:
        """Release every running job back to pending now, without counting its attempt (the
        successes already handed over are written first)."""
        self.flush_acks(self.clock())
        released = 0
        for slot in self.active:
            with slot.lock:
                if slot.ended:
                    continue
                slot.given_up = True
                slot.ctx.stop()
                try:
                    released += self.store.release(slot.held, reason="shutdown")
                except PyMongoError:
                    log.exception(
                        "release of job %s failed; its lease will expire", slot.held.job.id
                    )
            if slot.thread is not None and slot.thread.is_alive():
                self.abandoned.append(slot.thread)
        self.active = [s for s in self.active if not s.given_up]
        self.reap()
        return released

    # -- per slot ----------------------------------------------------------------------------

    def _heartbeat(self, slot: Slot, now: datetime) -> None:
        with slot.lock:
            if slot.ended:
                return
            try:
                alive = self.store.heartbeat(slot.held, now=now)
            except PyMongoError:
                log.warning("heartbeat for job %s failed; retrying next pass", slot.held.job.id)
                return
            slot.next_heartbeat = now + timedelta(seconds=self.settings.heartbeat_s)
            if not alive:
                slot.lost = True  # stop heartbeating; its thread will record nothing
                slot.ctx.stop()
                log.warning("lost the lease of job %s; it is no longer ours", slot.held.job.id)

    def _time_out(self, slot: Slot, now: datetime) -> None:
        with slot.lock:
            if slot.finished or slot.succeeded is not None:
                return  # done in time; its success is written by the next flush
            slot.given_up = True
            slot.ctx.stop()
            if not slot.lost:
                timeout_s = slot.held.job.timeout_s
                try:
                    state = self.store.fail(
                        slot.held, f"TimeoutError: ran longer than {timeout_s}s", now=now
                    )
                    self._count_failure(slot, state)
                except PyMongoError:
                    log.exception("could not fail timed-out job %s", slot.held.job.id)
        self.active.remove(slot)
        self.jobs_finished += 1
        if slot.thread is not None and slot.thread.is_alive():
            self.abandoned.append(slot.thread)
            self.needs_replacement = True
            log.error("job %s overran its timeout; its thread is abandoned", slot.held.job.id)

    def _finish(self, slot: Slot, outcome: Outcome) -> None:
        """In the job's thread: hand a success to the loop, write any other outcome, unless the
        loop gave the job up meanwhile."""
        with slot.lock:
            if isinstance(outcome, Succeeded) and not (slot.given_up or slot.lost):
                slot.succeeded = outcome  # written with the others by the loop's next flush
            else:
                try:
                    if not (slot.given_up or slot.lost or isinstance(outcome, Succeeded)):
                        self._record(slot, outcome)
                except PyMongoError:
                    log.exception(
                        "recording job %s failed; its lease will expire", slot.held.job.id
                    )
                finally:
                    slot.finished = True
        self._on_finished()

    def _record(self, slot: Slot, outcome: Failed | Expired) -> None:
        now = self.clock()
        if isinstance(outcome, Expired):
            self.store.expire(slot.held, now=now, reason=outcome.reason)
            return
        state = self.store.fail(
            slot.held,
            outcome.error,
            retryable=outcome.retryable,
            now=now,
            min_delay_s=outcome.retry_after_s,
        )
        self._count_failure(slot, state)

    def _count_failure(self, slot: Slot, state: JobState | None) -> None:
        if state is not None:  # None: the lease was lost, another owner decides
            self._on_failed(slot.held.job.queue, "dead" if state is JobState.DEAD else "failed")
