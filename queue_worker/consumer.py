"""The consumer: runs up to C jobs at once in threads, claiming only when a slot is free.

`run_once(now)` is one pass: reap finished slots, send due heartbeats, fail jobs past their
timeout, do due housekeeping (archive finished jobs, look for waiting suspect jobs), then claim
while a slot is free. `run()` is a short loop around it. A pass makes at most one claimer per
process, because on the local server a claim is a full scan and racing claimers re-scan.

Who writes what: a job's own thread writes its outcome (succeed/fail) right after its handler
returns, so the main loop can claim the next job meanwhile; the main loop writes heartbeats,
timeouts and releases. A per-slot lock orders these so a heartbeat never races the outcome of
the same job; the lease token fences everything else (other processes, stale workers).

Timeouts: a thread cannot be killed. A job past its timeout_s is failed through its lease token
(a failed attempt, retried with backoff), its thread is abandoned (a daemon that can no longer
write about the job) and its slot is freed at once; `needs_replacement` becomes True so a
supervisor replaces the process. Standalone, once `max_abandoned` threads are still running the
consumer stops claiming and `run()` returns; the CLI then exits with EXIT_NEEDS_REPLACEMENT.

Suspect jobs (crashes > 0, they took a consumer process down before) run alone: they are only
claimed by a consumer with nothing else running, which claims nothing else until they finish,
so a crash is attributed to exactly one job and innocent neighbours are never blamed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import PyMongoError

from queue_worker.errors import NonRetryableError
from queue_worker.job import Job
from queue_worker.lease import Lease, Suspects
from queue_worker.settings import QueueSettings
from queue_worker.store import Clock, Doc, JobStore, utcnow
from queue_worker.tasks import TaskRegistry

log = logging.getLogger(__name__)

EXIT_NEEDS_REPLACEMENT = 3
POLL_MIN_S = 0.01
MAX_WAIT_S = 0.25  # how late run() may notice request_stop()
ARCHIVE_BATCH = 50
ARCHIVE_EVERY_S = 1.0
SWEEP_EVERY_S = 30.0
SUSPECT_CHECK_EVERY_S = 10.0


class JobContext:
    """What a running handler sees (tasks.TaskContext), plus the queue's db and settings."""

    def __init__(self, held: Lease, store: JobStore) -> None:
        self.job: Job = held.job
        self.job_id = held.job.id
        self.attempt = held.job.attempts
        self.lease_token = held.token
        self.db = store.db
        self.settings = store.settings
        self._stop = threading.Event()

    def should_stop(self) -> bool:
        """Return True once the lease is lost, the timeout passed, or the job is being released."""
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()


@dataclass(eq=False)
class Slot:
    """One running job: its lease, context, thread and the times the main loop acts on."""

    held: Lease
    ctx: JobContext
    deadline: datetime
    next_heartbeat: datetime
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    finished: bool = False  # the thread is done (outcome written, or not ours to write)
    given_up: bool = False  # the main loop timed it out or released it: the thread writes nothing
    lost: bool = False  # a heartbeat found the lease gone: nobody writes anything


class Consumer:
    """Claim and run jobs from `queues` with `concurrency` threads; see the module docstring."""

    def __init__(
        self,
        store: JobStore,
        registry: TaskRegistry,
        settings: QueueSettings,
        *,
        owner: str,
        queues: list[str] | None = None,
        concurrency: int = 1,
        clock: Clock = utcnow,
        max_abandoned: int | None = None,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.owner = owner
        self.queues = list(queues or [settings.default_queue])
        self.concurrency = max(1, concurrency)
        self.clock = clock
        self.max_abandoned = max_abandoned if max_abandoned is not None else self.concurrency
        self.stop_timeout_s = stop_timeout_s
        self.jobs_finished = 0
        self.needs_replacement = False
        self._slots: list[Slot] = []
        self._abandoned: list[threading.Thread] = []
        self._stop_requested = False
        self._wake = threading.Event()
        self._finished_docs: list[Doc] = []
        self._docs_lock = threading.Lock()
        self._idle_s = POLL_MIN_S
        self._next_claim: datetime | None = None
        self._next_archive: datetime | None = None
        self._next_sweep: datetime | None = None
        self._next_suspect_check: datetime | None = None
        self._isolating = False

    # -- control -----------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask run() to stop claiming and drain; only sets a flag (safe in a signal handler)."""
        self._stop_requested = True

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    def running_tasks(self) -> list[str]:
        """Return the task names of the jobs running now (one per busy slot)."""
        return [slot.held.job.task for slot in self._slots]

    def abandoned_threads(self) -> int:
        """Return how many timed-out handler threads are still running."""
        self._abandoned = [t for t in self._abandoned if t.is_alive()]
        return len(self._abandoned)

    # -- loop --------------------------------------------------------------------------------

    def run(self) -> None:
        """Claim and run jobs until request_stop(); then drain within stop_timeout_s."""
        while not self._stop_requested:
            now = self.clock()
            self.run_once(now)
            self.wait_for_work(now)
        self.drain(self.stop_timeout_s)

    def wait_for_work(self, now: datetime, max_s: float = MAX_WAIT_S) -> None:
        """Sleep until the next pass has something to do (at most `max_s`): a job finished, or a
        claim, heartbeat or timeout is due. External loops call this between passes."""
        self._wake.wait(min(max_s, self._next_wait(now)))
        self._wake.clear()  # a thread finishing after this is seen by the next wait at once

    def run_once(self, now: datetime) -> int:
        """Do one pass at time `now`; return how many jobs it started."""
        self._reap()
        self._tend(now)
        self._housekeep(now)
        if self.abandoned_threads() >= self.max_abandoned:
            self._stop_requested = True  # too many stuck threads: let a fresh process take over
        started = 0
        while self._may_claim(now):
            held = self._claim(now)
            if held is None:
                self._next_claim = now + timedelta(seconds=self._idle_s)
                self._idle_s = min(self._idle_s * 2, self.settings.poll_max_s)
                break
            self._idle_s = POLL_MIN_S
            self._next_claim = None
            self._start(held, now)
            started += 1
        return started

    def drain(self, timeout_s: float) -> int:
        """Stop claiming, let running jobs finish within `timeout_s`, release the rest at once."""
        self._stop_requested = True
        deadline = time.monotonic() + timeout_s
        while True:
            now = self.clock()
            self.run_once(now)
            left = deadline - time.monotonic()
            if not self._slots or left <= 0:
                break
            self.wait_for_work(now, max_s=left)
        released = self.release_all()
        self._flush_archive()
        return released

    def release_all(self) -> int:
        """Release every running job back to pending now, without counting its attempt."""
        released = 0
        for slot in self._slots:
            with slot.lock:
                if slot.finished or slot.lost or slot.given_up:
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
                self._abandoned.append(slot.thread)
        self._slots = [s for s in self._slots if not s.given_up]
        self._reap()
        return released

    # -- pass steps --------------------------------------------------------------------------

    def _reap(self) -> None:
        keep: list[Slot] = []
        for slot in self._slots:
            if slot.finished:
                self.jobs_finished += 1
            else:
                keep.append(slot)
        self._slots = keep

    def _tend(self, now: datetime) -> None:
        for slot in list(self._slots):
            if now >= slot.deadline:
                self._time_out(slot, now)
            elif now >= slot.next_heartbeat:
                self._heartbeat(slot, now)

    def _heartbeat(self, slot: Slot, now: datetime) -> None:
        with slot.lock:
            if slot.finished or slot.lost or slot.given_up:
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
            if slot.finished:
                return
            slot.given_up = True
            slot.ctx.stop()
            if not slot.lost:
                timeout_s = slot.held.job.timeout_s
                try:
                    self.store.fail(
                        slot.held, f"TimeoutError: ran longer than {timeout_s}s", now=now
                    )
                except PyMongoError:
                    log.exception("could not fail timed-out job %s", slot.held.job.id)
        self._slots.remove(slot)
        self.jobs_finished += 1
        if slot.thread is not None and slot.thread.is_alive():
            self._abandoned.append(slot.thread)
            self.needs_replacement = True
            log.error("job %s overran its timeout; its thread is abandoned", slot.held.job.id)

    def _housekeep(self, now: datetime) -> None:
        with self._docs_lock:
            pending_docs = len(self._finished_docs)
        if pending_docs >= ARCHIVE_BATCH or (
            pending_docs and (self._next_archive is None or now >= self._next_archive)
        ):
            self._flush_archive()
            self._next_archive = now + timedelta(seconds=ARCHIVE_EVERY_S)
        try:
            if self._next_sweep is None or now >= self._next_sweep:
                self._next_sweep = now + timedelta(seconds=SWEEP_EVERY_S)
                self.store.archive_finished()
            if self._next_suspect_check is None or now >= self._next_suspect_check:
                self._next_suspect_check = now + timedelta(seconds=SUSPECT_CHECK_EVERY_S)
                self._isolating = self.store.suspect_due(self.queues, now=now)
        except PyMongoError:
            log.warning("housekeeping failed; retrying later", exc_info=True)

    def _flush_archive(self) -> None:
        with self._docs_lock:
            docs, self._finished_docs = self._finished_docs, []
        if not docs:
            return
        try:
            self.store.archive(docs)
        except PyMongoError:
            # They stay in `jobs` as succeeded; the periodic sweep moves them later.
            log.warning("archiving %d finished jobs failed; the sweep will retry", len(docs))

    # -- claiming ----------------------------------------------------------------------------

    def _suspect_running(self) -> bool:
        return any(slot.held.suspect for slot in self._slots)

    def _claims_blocked(self) -> bool:
        if self._stop_requested or len(self._slots) >= self.concurrency:
            return True
        if self._suspect_running():
            return True  # a suspect runs alone
        # While a suspect waits, stop taking new work so this consumer drains and can run it
        # (unless stuck threads mean it can never be alone: then leave the suspect to others).
        return self._isolating and bool(self._slots) and not self._abandoned

    def _may_claim(self, now: datetime) -> bool:
        if self._claims_blocked():
            return False
        return self._next_claim is None or now >= self._next_claim

    def _claim(self, now: datetime) -> Lease | None:
        if self._slots or self._abandoned:
            suspects = Suspects.EXCLUDE  # a crash now could be a neighbour's doing
        else:
            suspects = Suspects.ONLY if self._isolating else Suspects.ALLOW
        try:
            held = self.store.claim(self.owner, queues=self.queues, now=now, suspects=suspects)
        except PyMongoError:
            log.warning("claim failed; backing off", exc_info=True)
            return None
        if held is None and suspects is Suspects.ONLY:
            self._isolating = False  # someone else took it (or it was cancelled)
            return self._claim(now)
        return held

    def _start(self, held: Lease, now: datetime) -> None:
        timeout = timedelta(seconds=held.job.timeout_s)
        slot = Slot(
            held=held,
            ctx=JobContext(held, self.store),
            deadline=now + timeout,
            next_heartbeat=now + timedelta(seconds=self.settings.heartbeat_s),
        )
        self._slots.append(slot)
        if held.suspect:
            self._isolating = False
        if held.rescued and held.job.attempts > held.job.max_attempts:
            # Its last attempt died with its worker: nothing left to try.
            self._finish(slot, ("error", "lease expired during the last attempt", True))
            return
        slot.thread = threading.Thread(
            target=self._execute, args=(slot,), name=f"job-{held.job.id}", daemon=True
        )
        slot.thread.start()

    # -- job threads -------------------------------------------------------------------------

    def _execute(self, slot: Slot) -> None:
        job = slot.held.job
        spec = self.registry.find(job.task)
        outcome: tuple[str, Any, bool]
        if spec is None:
            outcome = ("error", f"UnknownTaskError: no task named {job.task!r} here", False)
        else:
            try:
                outcome = ("ok", spec.handler(dict(job.payload), slot.ctx), True)
            except NonRetryableError as exc:
                outcome = ("error", exc, False)
            except Exception as exc:  # any other handler error is a retryable failed attempt
                log.info("job %s (%s) failed: %s", job.id, job.task, type(exc).__name__)
                outcome = ("error", exc, True)
        self._finish(slot, outcome)

    def _finish(self, slot: Slot, outcome: tuple[str, Any, bool]) -> None:
        kind, value, retryable = outcome
        with slot.lock:
            try:
                if not (slot.given_up or slot.lost):
                    self._record(slot, kind, value, retryable)
            except PyMongoError:
                log.exception("recording job %s failed; its lease will expire", slot.held.job.id)
            finally:
                slot.finished = True
        self._wake.set()

    def _record(self, slot: Slot, kind: str, value: Any, retryable: bool) -> None:
        now = self.clock()
        if kind == "ok":
            final = self.store.succeed(slot.held, value, now=now)
            if final is not None:
                with self._docs_lock:
                    self._finished_docs.append(final)
        else:
            self.store.fail(slot.held, value, retryable=retryable, now=now)

    def _next_wait(self, now: datetime) -> float:
        """Return how long run() may sleep before the next pass has something to do."""
        due = [now + timedelta(seconds=MAX_WAIT_S)]
        if not self._claims_blocked():
            due.append(self._next_claim or now)
        for slot in self._slots:
            due.append(min(slot.deadline, slot.next_heartbeat))
        return max(0.0, (min(due) - now).total_seconds())
